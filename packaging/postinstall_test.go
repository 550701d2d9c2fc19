package packaging

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const postinstSrc = "packaging/scripts/postinstall.sh"

// wantLinks are the symlinks both packages hold, path -> target.
var wantLinks = map[string]string{"/usr/sbin/ec2-policy-routes": "/opt/cni/bin/ec2-policy-routes"}

func checkLinks(t *testing.T, deb, rpm pkgInfo) {
	t.Helper()
	for kind, p := range map[string]pkgInfo{".deb": deb, ".rpm": rpm} {
		for path, target := range wantLinks {
			if e := p.files[path]; e == nil || e.symlink != target {
				t.Errorf("%s: %s is not a symlink to %s: %+v", kind, path, target, e)
			}
		}
	}
}

// checkPostinst: both packages carry the post-install script verbatim.
func checkPostinst(t *testing.T, root string, deb, rpm pkgInfo) {
	t.Helper()
	want, err := os.ReadFile(filepath.Join(root, postinstSrc))
	if err != nil {
		t.Fatal(err)
	}
	for kind, p := range map[string]pkgInfo{".deb": deb, ".rpm": rpm} {
		// nfpm may add a trailing newline; the script itself must be there.
		if !strings.Contains(p.postinst, strings.TrimSpace(string(want))) {
			t.Errorf("%s: post-install is not %s:\n%s", kind, postinstSrc, p.postinst)
		}
	}
}

// TestPostinstallRefreshesFronts runs the post-install script as dpkg and
// rpm would (deb: "configure <old>", rpm: "2" on upgrade) against a
// fixture: an install named by ecs.config gets the new binary, its links
// and settings stay, a directory without the settings file is untouched.
func TestPostinstallRefreshesFronts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not in PATH")
	}
	root := repoRoot(t)
	base := t.TempDir()
	bin := filepath.Join(base, "ec2-policy-routes")
	build := exec.Command(gobin, "build", "-trimpath", "-o", bin, "./plugins/ec2-policy-routes")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	dir := filepath.Join(base, "front")
	notInstall := filepath.Join(base, "other")
	for _, d := range []string{dir, notInstall} {
		mustWrite(t, filepath.Join(d, "vpc-eni"), "old build", 0o755)
	}
	mustWrite(t, filepath.Join(dir, "vpc-branch-eni"), "old build", 0o755)
	mustWrite(t, filepath.Join(dir, "ec2-policy-routes-front.json"), `{"upstream":"/amazon-ecs-cni-plugins"}`+"\n", 0o644)
	if err := os.Symlink("/amazon-ecs-cni-plugins/ecs-bridge", filepath.Join(dir, "ecs-bridge")); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(base, "ecs.config")
	mustWrite(t, conf, "ECS_CLUSTER=x\nECS_CNI_PLUGINS_PATH="+dir+"\n", 0o644)
	newBin, _ := os.ReadFile(bin)
	for _, args := range [][]string{{"configure", "0.9.0"}, {"2"}} {
		cmd := exec.Command("/bin/sh", append([]string{filepath.Join(root, postinstSrc)}, args...)...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "EC2PR_POSTINST_BIN=" + bin, "EC2PR_POSTINST_ECS_CONFIG=" + conf}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("postinstall %v: %v\n%s", args, err, out)
		}
		t.Logf("postinstall %v:\n%s", args, out)
		for _, name := range []string{"vpc-eni", "vpc-branch-eni"} {
			got, _ := os.ReadFile(filepath.Join(dir, name))
			fi, _ := os.Stat(filepath.Join(dir, name))
			if !bytes.Equal(got, newBin) || fi.Mode().Perm() != 0o755 {
				t.Errorf("%s/%s not refreshed (mode %v)", dir, name, fi.Mode())
			}
		}
		if got, _ := os.ReadFile(filepath.Join(notInstall, "vpc-eni")); string(got) != "old build" {
			t.Error("postinstall wrote into a directory that is not an install")
		}
		if target, _ := os.Readlink(filepath.Join(dir, "ecs-bridge")); target != "/amazon-ecs-cni-plugins/ecs-bridge" {
			t.Errorf("postinstall touched a link: %s", target)
		}
		if got, _ := os.ReadFile(conf); string(got) != "ECS_CLUSTER=x\nECS_CNI_PLUGINS_PATH="+dir+"\n" {
			t.Errorf("postinstall edited ecs.config: %q", got)
		}
	}
	// No binary (the package's files not there): a no-op, success.
	cmd := exec.Command("/bin/sh", filepath.Join(root, postinstSrc), "configure")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "EC2PR_POSTINST_BIN=" + filepath.Join(base, "absent")}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("postinstall without the binary: %v\n%s", err, out)
	}
}

func mustWrite(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}
