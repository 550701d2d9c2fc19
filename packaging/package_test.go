// Package packaging holds the nfpm configuration, the man page and the tests
// that build the .deb and .rpm and read their contents back.
package packaging

import (
	"archive/tar"
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// entry is one file or directory in a package payload.
type entry struct {
	mode    os.FileMode // permission bits
	dir     bool
	symlink string
	sum     [32]byte
	data    []byte // kept for small files only
	config  bool   // deb conffile / rpm %config
}

type pkgInfo struct {
	name, version, arch string
	files               map[string]*entry
	postinst            string // deb postinst / rpm %post
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("repository root not found from %s", dir)
	}
	return dir
}

const testVersion = "0.0.0+pkgtest"

// buildPackages builds the plugin (stamped with testVersion) and both
// packages with nfpm, the way `make package` does; it skips when nfpm
// cannot be built (no module proxy) or `go` is missing.
func buildPackages(t *testing.T) (bin, deb, rpm string) {
	t.Helper()
	if testing.Short() {
		t.Skip("packaging test skipped in -short mode (builds nfpm and both packages)")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not in PATH: cannot build the packages")
	}
	root := repoRoot(t)
	out := t.TempDir()
	nfpm := []string{"tool", "-modfile=packaging/tools/go.mod", "nfpm"}
	check := exec.Command(gobin, append(nfpm, "--version")...)
	check.Dir = root
	if b, err := check.CombinedOutput(); err != nil {
		t.Skipf("nfpm (go tool, packaging/tools/go.mod) unavailable, cannot build packages: %v\n%s", err, lastLines(b, 5))
	}
	bin = filepath.Join(out, "ec2-policy-routes")
	build := exec.Command(gobin, "build", "-trimpath", "-ldflags", "-s -w -X main.Version="+testVersion, "-o", bin, "./plugins/ec2-policy-routes")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	for _, format := range []string{"deb", "rpm"} {
		cmd := exec.Command(gobin, append(nfpm, "package", "--config", "packaging/nfpm.yaml", "--packager", format, "--target", out+"/")...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "PKG_ARCH="+runtime.GOARCH, "PKG_VERSION="+testVersion, "EC2PR_PKG_BIN="+bin,
			"PKG_MAINTAINER=test <test@example.invalid>")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nfpm package %s: %v\n%s", format, err, b)
		}
	}
	debs, _ := filepath.Glob(filepath.Join(out, "*.deb"))
	rpms, _ := filepath.Glob(filepath.Join(out, "*.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		t.Fatalf("want one .deb and one .rpm in %s, got %v %v", out, debs, rpms)
	}
	return bin, debs[0], rpms[0]
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func TestPackages(t *testing.T) {
	bin, debPath, rpmPath := buildPackages(t)
	binSum := fileSum(t, bin)
	root := repoRoot(t)
	deb := readDeb(t, debPath)
	rpm := readRPM(t, rpmPath)
	rpmArch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]

	if deb.name != "ec2-policy-routes" || deb.version != testVersion+"-1" || deb.arch != runtime.GOARCH {
		t.Errorf("deb control: %s %s %s", deb.name, deb.version, deb.arch)
	}
	if rpm.name != "ec2-policy-routes" || rpm.version != testVersion+"-1" || rpm.arch != rpmArch {
		t.Errorf("rpm header: %s %s %s", rpm.name, rpm.version, rpm.arch)
	}

	// What both packages must hold, with modes, and where content comes from.
	want := map[string]struct {
		mode   os.FileMode
		src    string // repo file with the same content; "" for the binary
		config bool
	}{
		"/opt/cni/bin/ec2-policy-routes":                                              {0o755, "", false},
		"/amazon-ecs-cni-plugins/ec2-policy-routes":                                   {0o755, "", false},
		"/etc/iproute2/rt_protos.d/ec2-policy-routes.conf":                            {0o644, "conf/iproute2/rt_protos.d/ec2-policy-routes.conf", true},
		"/usr/share/ec2-policy-routes/udev/99-vpc-policy-routes.rules":                {0o644, "conf/udev/99-vpc-policy-routes.rules", false},
		"/usr/share/ec2-policy-routes/systemd/networkd.conf.d/ec2-policy-routes.conf": {0o644, "conf/systemd/networkd.conf.d/ec2-policy-routes.conf", false},
		"/usr/share/ec2-policy-routes/containerd/10-task-eni.conflist":                {0o644, "conf/containerd/10-task-eni.conflist", false},
		"/usr/share/ec2-policy-routes/ecs/ec2-policy-routes.json":                     {0o644, "conf/ecs/ec2-policy-routes.json", false},
		"/usr/share/ec2-policy-routes/README.md":                                      {0o644, "conf/README.md", false},
		"/usr/share/man/man8/ec2-policy-routes.8":                                     {0o644, "packaging/ec2-policy-routes.8", false},
		"/usr/share/doc/ec2-policy-routes/README.md":                                  {0o644, "README.md", false},
		"/usr/share/doc/ec2-policy-routes/CHANGELOG.md":                               {0o644, "CHANGELOG.md", false},
	}
	for kind, p := range map[string]pkgInfo{".deb": deb, ".rpm": rpm} {
		for path, w := range want {
			e := p.files[path]
			if e == nil || e.dir {
				t.Errorf("%s: %s missing", kind, path)
				continue
			}
			if e.mode != w.mode {
				t.Errorf("%s: %s mode %v, want %v", kind, path, e.mode, w.mode)
			}
			if e.config != w.config {
				t.Errorf("%s: %s config=%v, want %v", kind, path, e.config, w.config)
			}
			wantSum := binSum
			if w.src != "" {
				wantSum = fileSum(t, filepath.Join(root, w.src))
			}
			if e.sum != wantSum {
				t.Errorf("%s: %s content differs from %s", kind, path, cmp.Or(w.src, "the built binary"))
			}
		}
		// Nothing may land in /etc but the protocol name: the udev and
		// networkd files change other software and are opt-in.
		for path, e := range p.files {
			if strings.HasPrefix(path, "/etc/") && !e.dir && path != "/etc/iproute2/rt_protos.d/ec2-policy-routes.conf" {
				t.Errorf("%s: unexpected active file %s", kind, path)
			}
			if _, ok := want[path]; !ok && !e.dir && wantLinks[path] == "" {
				t.Errorf("%s: unexpected file %s", kind, path)
			}
		}
	}

	checkPostinst(t, root, deb, rpm)
	checkLinks(t, deb, rpm)

	// The packaged binary reports the version stamped at link time.
	extracted := filepath.Join(t.TempDir(), "ec2-policy-routes")
	if err := os.WriteFile(extracted, deb.files["/opt/cni/bin/ec2-policy-routes"].data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(extracted, "--version")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != "ec2-policy-routes "+testVersion {
		t.Errorf("packaged --version: %q %v", out, err)
	}
	cmd = exec.Command(extracted, "--help")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if out, err := cmd.Output(); err != nil || !strings.Contains(string(out), "doctor") {
		t.Errorf("packaged --help: %v\n%s", err, out)
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// readDeb reads an ar archive holding debian-binary, control.tar.gz and
// data.tar.gz.
func readDeb(t *testing.T, path string) pkgInfo {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("!<arch>\n")) {
		t.Fatalf("%s is not an ar archive", path)
	}
	members := map[string][]byte{}
	for off := 8; off+60 <= len(b); {
		hdr := b[off : off+60]
		name := strings.TrimSuffix(strings.TrimSpace(string(hdr[0:16])), "/")
		size, err := strconv.Atoi(strings.TrimSpace(string(hdr[48:58])))
		if err != nil || string(hdr[58:60]) != "`\n" {
			t.Fatalf("%s: bad ar header at %d", path, off)
		}
		off += 60
		members[name] = b[off : off+size]
		off += size + size%2
	}
	if string(members["debian-binary"]) != "2.0\n" {
		t.Fatalf("debian-binary = %q", members["debian-binary"])
	}
	info := pkgInfo{files: map[string]*entry{}}
	ctrl := readTarGz(t, members["control.tar.gz"])
	for _, line := range strings.Split(string(ctrl["/control"].data), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		switch k {
		case "Package":
			info.name = v
		case "Version":
			info.version = v
		case "Architecture":
			info.arch = v
		}
	}
	info.files = readTarGz(t, members["data.tar.gz"])
	if pi := ctrl["/postinst"]; pi != nil {
		info.postinst = string(pi.data)
	}
	if cf := ctrl["/conffiles"]; cf != nil {
		for _, p := range strings.Fields(string(cf.data)) {
			if e := info.files[p]; e != nil {
				e.config = true
			}
		}
	}
	return info
}

func readTarGz(t *testing.T, b []byte) map[string]*entry {
	t.Helper()
	if b == nil {
		t.Fatal("tar member missing")
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string]*entry{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		e := &entry{mode: os.FileMode(h.Mode).Perm(), dir: h.Typeflag == tar.TypeDir, sum: sha256.Sum256(data), data: data}
		if h.Typeflag == tar.TypeSymlink {
			e.symlink = h.Linkname
		}
		out["/"+strings.TrimPrefix(strings.TrimPrefix(h.Name, "."), "/")] = e
	}
}

// RPM header tags used here.
const (
	tagName       = 1000
	tagVersion    = 1001
	tagRelease    = 1002
	tagArch       = 1022
	tagPostIn     = 1024
	tagFileFlags  = 1037
	tagDirIndexes = 1116
	tagBaseNames  = 1117
	tagDirNames   = 1118
	tagCompressor = 1125
	rpmFileConfig = 1 << 0
)

type rpmHeader struct {
	strs  map[int][]string
	ints  map[int][]uint32
	bytes int // total length, for the caller to skip
}

// parseRPMHeader reads one header structure (magic, index, store).
func parseRPMHeader(b []byte) (*rpmHeader, error) {
	if len(b) < 16 || !bytes.Equal(b[:4], []byte{0x8e, 0xad, 0xe8, 0x01}) {
		return nil, errors.New("bad header magic")
	}
	n := int(binary.BigEndian.Uint32(b[8:12]))
	size := int(binary.BigEndian.Uint32(b[12:16]))
	idx, store := b[16:16+16*n], b[16+16*n:16+16*n+size]
	h := &rpmHeader{strs: map[int][]string{}, ints: map[int][]uint32{}, bytes: 16 + 16*n + size}
	for i := range n {
		e := idx[16*i : 16*i+16]
		tag := int(binary.BigEndian.Uint32(e[0:4]))
		typ := binary.BigEndian.Uint32(e[4:8])
		off := int(binary.BigEndian.Uint32(e[8:12]))
		count := int(binary.BigEndian.Uint32(e[12:16]))
		switch typ {
		case 4: // INT32
			for j := range count {
				h.ints[tag] = append(h.ints[tag], binary.BigEndian.Uint32(store[off+4*j:]))
			}
		case 6, 8, 9: // STRING, STRING_ARRAY, I18NSTRING
			p := off
			for range count {
				end := bytes.IndexByte(store[p:], 0)
				h.strs[tag] = append(h.strs[tag], string(store[p:p+end]))
				p += end + 1
			}
		}
	}
	return h, nil
}

// readRPM reads the lead, the signature and main headers, and the gzip
// cpio (newc) payload.
func readRPM(t *testing.T, path string) pkgInfo {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 96 || !bytes.Equal(b[:4], []byte{0xed, 0xab, 0xee, 0xdb}) {
		t.Fatalf("%s: not an rpm (lead magic)", path)
	}
	off := 96
	sig, err := parseRPMHeader(b[off:])
	if err != nil {
		t.Fatalf("signature header: %v", err)
	}
	off += sig.bytes
	off += (8 - off%8) % 8 // the signature is padded to 8 bytes
	hdr, err := parseRPMHeader(b[off:])
	if err != nil {
		t.Fatalf("main header: %v", err)
	}
	off += hdr.bytes
	first := func(tag int) string {
		if v := hdr.strs[tag]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	info := pkgInfo{name: first(tagName), version: first(tagVersion) + "-" + first(tagRelease), arch: first(tagArch)}
	info.postinst = first(tagPostIn)
	if c := first(tagCompressor); c != "gzip" {
		t.Fatalf("payload compressor %q, this reader handles gzip", c)
	}
	// %config flags by path from the header's file list.
	configs := map[string]bool{}
	dirs, bases, dirIdx, flags := hdr.strs[tagDirNames], hdr.strs[tagBaseNames], hdr.ints[tagDirIndexes], hdr.ints[tagFileFlags]
	for i, base := range bases {
		if i < len(dirIdx) && i < len(flags) && int(dirIdx[i]) < len(dirs) {
			configs[dirs[dirIdx[i]]+base] = flags[i]&rpmFileConfig != 0
		}
	}
	zr, err := gzip.NewReader(bytes.NewReader(b[off:]))
	if err != nil {
		t.Fatalf("payload: %v", err)
	}
	info.files = readCpio(t, bufio.NewReader(zr))
	for p, e := range info.files {
		e.config = configs[p]
	}
	return info
}

// readCpio reads a "newc" (070701) archive.
func readCpio(t *testing.T, r io.Reader) map[string]*entry {
	t.Helper()
	out := map[string]*entry{}
	read := 0
	field := func(h []byte, i int) int {
		v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("cpio header field %d: %v", i, err)
		}
		return int(v)
	}
	skip := func(n int) {
		if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
			t.Fatal(err)
		}
		read += n
	}
	for {
		h := make([]byte, 110)
		if _, err := io.ReadFull(r, h); err != nil {
			t.Fatalf("cpio header: %v", err)
		}
		read += 110
		if string(h[:6]) != "070701" {
			t.Fatalf("cpio magic %q", h[:6])
		}
		mode, size, nameLen := field(h, 1), field(h, 6), field(h, 11)
		name := make([]byte, nameLen)
		if _, err := io.ReadFull(r, name); err != nil {
			t.Fatal(err)
		}
		read += nameLen
		skip((4 - read%4) % 4)
		n := strings.TrimRight(string(name), "\x00")
		if n == "TRAILER!!!" {
			return out
		}
		data := make([]byte, size)
		if _, err := io.ReadFull(r, data); err != nil {
			t.Fatal(err)
		}
		read += size
		skip((4 - read%4) % 4)
		e := &entry{mode: os.FileMode(mode).Perm(), dir: mode&0o170000 == 0o040000, sum: sha256.Sum256(data), data: data}
		if mode&0o170000 == 0o120000 {
			e.symlink = string(data)
		}
		out["/"+strings.TrimPrefix(strings.TrimPrefix(n, "."), "/")] = e
	}
}
