package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/doctor"
)

// docRoot is a fixture host tree whose /var/run/netns and /proc/PID/ns/net
// entries are symlinks to real namespaces, so the doctor scans exactly the
// namespaces a test made (and not the other tests' running in parallel).
type docRoot struct {
	t    *testing.T
	root string
}

func newDocRoot(t *testing.T) *docRoot {
	r := &docRoot{t: t, root: t.TempDir()}
	r.write("/proc/loadavg", "0.05 0.04 0.01 1/100 4242\n")
	r.write("/proc/stat", "cpu 1\ncpu0 1\n")
	return r
}

func (r *docRoot) write(p, s string) {
	r.t.Helper()
	full := filepath.Join(r.root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(s), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *docRoot) link(target, p string) {
	r.t.Helper()
	full := filepath.Join(r.root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Symlink(target, full); err != nil {
		r.t.Fatal(err)
	}
}

func (r *docRoot) run(t *testing.T) *doctor.Report {
	t.Helper()
	rep, err := doctor.Run(context.Background(), doctor.Options{Root: r.root, SkipUnits: true})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func docCheck(t *testing.T, rep *doctor.Report, id string) doctor.Check {
	t.Helper()
	for _, c := range rep.Checks {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("no check %s", id)
	return doctor.Check{}
}

func docADD(t *testing.T, bin string, ns *h.Netns, verb string) {
	t.Helper()
	conf := []byte(fmt.Sprintf(`{"cniVersion":"0.3.0","name":"network-name","type":"ec2-policy-routes","imds":{"enabled":false},"logFile":%q}`,
		filepath.Join(t.TempDir(), "p.log")))
	h.Run(context.Background(), t, bin, h.Env{Command: verb, ContainerID: "doc", Netns: ns.Path, IfName: "eth0", Path: "/x"}, conf).MustSucceed(t, verb)
}

// The doctor lists our rules and routes per real namespace, deduplicates a
// namespace reached by several paths (two netns names and a process), skips
// namespaces without state of ours, flags a table orphaned by a departed
// link, and sees it reaped by DEL.
func TestDoctorRealNetns(t *testing.T) {
	h.RequireRoot(t)
	bin := h.Binary(t)
	ns, other := h.NewNetns(t), h.NewNetns(t)
	eni := h.NewENI(t)
	eni.MoveInto(t, ns, "eth0", []string{"10.30.1.25/24"}, "10.30.1.1")
	docADD(t, bin, ns, "ADD")

	r := newDocRoot(t)
	r.link(ns.Path, "/var/run/netns/task-a")
	r.link(ns.Path, "/var/run/netns/task-a-alias")
	r.link(other.Path, "/var/run/netns/empty")
	r.write("/proc/4242/cmdline", "/pause\x00")
	r.link(ns.Path, "/proc/4242/ns/net")
	r.write("/proc/4243/cmdline", "/app\x00")
	r.link(ns.Path, "/proc/4243/ns/net")

	rep := r.run(t)
	if rep.NamespacesScanned != 2 || rep.NamespaceErrors != 0 {
		t.Fatalf("scanned %d namespaces (%d errors), want 2: %+v", rep.NamespacesScanned, rep.NamespaceErrors, docCheck(t, rep, doctor.CheckNetns))
	}
	if len(rep.Namespaces) != 1 {
		t.Fatalf("want exactly the task namespace listed, got %+v", rep.Namespaces)
	}
	got := rep.Namespaces[0]
	if !slices.Equal(got.Paths, []string{"/var/run/netns/task-a", "/var/run/netns/task-a-alias"}) || !slices.Equal(got.PIDs, []int{4242, 4243}) || got.Host {
		t.Errorf("namespace identity: paths %v pids %v host %v", got.Paths, got.PIDs, got.Host)
	}
	if !slices.Contains(got.Rules, "rule from 10.30.1.25/32 lookup 10000 priority 10000") {
		t.Errorf("rules: %v", got.Rules)
	}
	if !slices.ContainsFunc(got.Routes, func(s string) bool { return strings.Contains(s, "via 10.30.1.1 dev eth0 table 10000") }) {
		t.Errorf("routes (link names resolved): %v", got.Routes)
	}
	if !slices.Equal(got.Tables, []int{10000}) || len(got.OrphanTables) != 0 {
		t.Errorf("tables %v orphans %v", got.Tables, got.OrphanTables)
	}
	if c := docCheck(t, rep, doctor.CheckNetns); c.Status != doctor.StatusOK {
		t.Errorf("netns check: %s %s", c.Status, c.Summary)
	}

	// The ENI leaves without a DEL: the kernel flushes its routes, our rule
	// stays and points at an orphaned table.
	ns.IP(t, "link", "del", "eth0")
	rep = r.run(t)
	if len(rep.Namespaces) != 1 || !slices.Equal(rep.Namespaces[0].OrphanTables, []int{10000}) {
		t.Fatalf("orphan not reported: %+v", rep.Namespaces)
	}
	if c := docCheck(t, rep, doctor.CheckNetns); c.Status != doctor.StatusWarn || !strings.Contains(c.Summary, "no route through a link") {
		t.Errorf("orphan check: %s %s", c.Status, c.Summary)
	}
	if !rep.Healthy {
		t.Errorf("an orphaned table is a warning, not a problem")
	}

	docADD(t, bin, ns, "DEL")
	rep = r.run(t)
	if len(rep.Namespaces) != 0 {
		t.Errorf("DEL left state: %+v", rep.Namespaces)
	}
}

// The binary's doctor subcommand against a fixture root with a real
// namespace: --json is one document, --prometheus has the totals, and the
// exit code follows problems (a stale ec2-net-utils lock).
func TestDoctorBinary(t *testing.T) {
	h.RequireRoot(t)
	bin := h.Binary(t)
	ns := h.NewNetns(t)
	eni := h.NewENI(t)
	eni.MoveInto(t, ns, "eth0", []string{"10.31.1.25/24"}, "10.31.1.1")
	docADD(t, bin, ns, "ADD")
	r := newDocRoot(t)
	r.link(ns.Path, "/var/run/netns/task")

	doc := func(args ...string) (int, []byte) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"doctor", "--root", r.root, "--systemctl", "none"}, args...)...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"} // no CNI_COMMAND: a person runs it
		var out bytes.Buffer
		cmd.Stdout = &out
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.Bytes()
	}
	code, out := doc("--json")
	var rep doctor.Report
	if err := json.Unmarshal(out, &rep); err != nil || code != 0 {
		t.Fatalf("exit %d, --json: %v\n%s", code, err, out)
	}
	if len(rep.Namespaces) != 1 || len(rep.Namespaces[0].Rules) != 1 {
		t.Errorf("namespaces: %+v", rep.Namespaces)
	}
	code, out = doc("--prometheus")
	if code != 0 || !bytes.Contains(out, []byte("ec2_policy_routes_doctor_owned_rules 1\n")) ||
		!bytes.Contains(out, []byte("ec2_policy_routes_doctor_netns_with_policy_routing 1\n")) {
		t.Errorf("exit %d, prometheus:\n%s", code, out)
	}

	r.write("/run/amazon-ec2-net-utils/setup-policy-routes/ecs0a1b2c", "999999\n")
	code, out = doc()
	if code != 1 || !bytes.Contains(out, []byte("[PROBLEM] ec2_net_utils_lock_files")) || !bytes.Contains(out, []byte("/var/run/netns/task")) {
		t.Errorf("exit %d, text:\n%s", code, out)
	}
}
