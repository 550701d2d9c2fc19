package repair

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/doctor"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/systemd"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/udevoverride"
)

// fakeHost is a fabricated host tree read by the real doctor, with a fake
// systemd: its units are data, Stop ends the processes a unit runs, masks
// are /dev/null links in the tree's /run/systemd/system.
type fakeHost struct {
	t     *testing.T
	root  string
	units []systemd.Unit
	procs map[string]string // pid -> "iface action"
	calls []string
	fail  map[string]error // call -> error
}

func newFakeHost(t *testing.T) *fakeHost {
	h := &fakeHost{t: t, root: t.TempDir(), procs: map[string]string{}, fail: map[string]error{}}
	h.write("/proc/loadavg", "0.10 0.20 0.30 1/200 4242\n")
	h.write("/proc/stat", "cpu  1\ncpu0 1\n")
	for _, i := range []string{"lo", "ens5", "ens6"} {
		h.mkdir("/sys/class/net/" + i)
	}
	return h
}

func (h *fakeHost) write(p, s string) {
	h.t.Helper()
	full := filepath.Join(h.root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(s), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h *fakeHost) mkdir(p string) {
	h.t.Helper()
	if err := os.MkdirAll(filepath.Join(h.root, p), 0o755); err != nil {
		h.t.Fatal(err)
	}
}

func (h *fakeHost) proc(pid, iface, action string) {
	h.write("/proc/"+pid+"/cmdline", "/bin/bash\x00/usr/bin/setup-policy-routes\x00"+iface+"\x00"+action+"\x00")
	h.procs[pid] = iface + " " + action
}

func (h *fakeHost) lock(iface, content string) {
	h.write(doctor.LockDir+"/"+iface, content)
}

func (h *fakeHost) unit(name, load, active, sub string) {
	h.units = append(h.units, systemd.Unit{Name: name, LoadState: load, ActiveState: active, SubState: sub})
}

// affected is the bug report's host: stuck units and processes for the
// handed-back ENI ecse1a2b3c, a failed unit for ecs0a0b0c, a dead owner,
// a reused PID, and the healthy ens5/ens6 with a live lock.
func (h *fakeHost) affected() {
	h.write("/usr/lib/udev/rules.d/99-vpc-policy-routes.rules", "SUBSYSTEM==\"net\", ACTION==\"add\", RUN+=\"...\"\n")
	h.proc("3312864", "ecse1a2b3c", "start")
	h.proc("3312900", "ecse1a2b3c", "refresh")
	h.proc("4100", "ens6", "start")
	h.write("/proc/777/cmdline", "/usr/sbin/sshd\x00-D\x00")
	h.lock("ecse1a2b3c", "3312864\n")
	h.lock("ens6", "4100\n")
	h.lock("ecs0a0b0c", "999999\n")
	h.lock("ecs0d0e0f", "777\n")
	h.unit("policy-routes@ens5.service", "loaded", "active", "exited")
	h.unit("refresh-policy-routes@ens5.timer", "loaded", "active", "waiting")
	h.unit("policy-routes@ens6.service", "loaded", "activating", "start")
	h.unit("policy-routes@ecse1a2b3c.service", "loaded", "activating", "start")
	h.unit("refresh-policy-routes@ecse1a2b3c.service", "loaded", "activating", "start")
	h.unit("refresh-policy-routes@ecse1a2b3c.timer", "loaded", "active", "waiting")
	h.unit("policy-routes@ecs0a0b0c.service", "loaded", "failed", "failed")
}

func (h *fakeHost) opts() doctor.Options {
	return doctor.Options{Root: h.root, Units: h, SkipNetns: true}
}

func (h *fakeHost) ListUnits(_ context.Context, patterns []string) ([]systemd.Unit, error) {
	var out []systemd.Unit
	for _, u := range h.units {
		for _, p := range patterns {
			if ok, _ := path.Match(p, u.Name); ok {
				out = append(out, u)
				break
			}
		}
	}
	return out, nil
}

func (h *fakeHost) Read(ctx context.Context) (*doctor.Findings, error) {
	return doctor.Read(ctx, h.opts())
}

func (h *fakeHost) Check(ctx context.Context) (*doctor.Report, error) {
	return doctor.Run(ctx, h.opts())
}

func (h *fakeHost) call(c string) error {
	h.calls = append(h.calls, c)
	return h.fail[c]
}

func (h *fakeHost) find(name string) *systemd.Unit {
	for i := range h.units {
		if h.units[i].Name == name {
			return &h.units[i]
		}
	}
	return nil
}

// Stop ends the unit and the processes it runs; a stopped start job of
// policy-routes@ ends "failed", as a killed oneshot does.
func (h *fakeHost) Stop(_ context.Context, unit string) error {
	if err := h.call("stop " + unit); err != nil {
		return err
	}
	u := h.find(unit)
	if u == nil {
		return errors.New("Unit " + unit + " not loaded.")
	}
	u.ActiveState, u.SubState = "inactive", "dead"
	if strings.HasPrefix(unit, "policy-routes@") {
		u.ActiveState, u.SubState = "failed", "failed"
	}
	action := "start"
	if strings.HasPrefix(unit, "refresh-") {
		action = "refresh"
	}
	iface := doctor.UnitInstance(unit)
	for pid, what := range h.procs {
		if what == iface+" "+action && !strings.HasSuffix(unit, ".timer") {
			if err := os.RemoveAll(filepath.Join(h.root, "proc", pid)); err != nil {
				return err
			}
			delete(h.procs, pid)
		}
	}
	return nil
}

func (h *fakeHost) ResetFailed(_ context.Context, unit string) error {
	if err := h.call("reset-failed " + unit); err != nil {
		return err
	}
	if u := h.find(unit); u != nil && u.ActiveState == "failed" {
		u.ActiveState, u.SubState = "inactive", "dead"
	}
	return nil
}

func (h *fakeHost) MaskRuntime(_ context.Context, units []string) error {
	if err := h.call("mask-runtime " + strings.Join(units, " ")); err != nil {
		return err
	}
	for _, name := range units {
		link := filepath.Join(h.root, doctor.RuntimeUnitDir, name)
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			return err
		}
		if err := os.Symlink("/dev/null", link); err != nil {
			return err
		}
		if u := h.find(name); u != nil {
			u.LoadState = "masked"
		}
	}
	return nil
}

func (h *fakeHost) ReloadUdev(context.Context) error { return h.call("reload-udev") }

func (h *fakeHost) PlaceUdevOverride() (bool, error) {
	if err := h.call("place-udev-override"); err != nil {
		return false, err
	}
	return udevoverride.Place(h.root)
}

func (h *fakeHost) RemoveLock(p string) error {
	if err := h.call("remove-lock " + p); err != nil {
		return err
	}
	return os.Remove(filepath.Join(h.root, p))
}

func targets(actions []Action, kind string) []string {
	var out []string
	for _, a := range actions {
		if a.Kind == kind {
			out = append(out, a.Target)
		}
	}
	return out
}

func strip(actions []Action) []Action {
	out := slices.Clone(actions)
	for i := range out {
		out[i].Done, out[i].Error = false, ""
	}
	return out
}

// The dry run plans exactly what --apply does, changes nothing, and
// --apply reaches healthy; a second --apply is a no-op.
func TestAffectedHostDryRunThenApply(t *testing.T) {
	h := newFakeHost(t)
	h.affected()
	ctx := context.Background()
	dry, err := Run(ctx, h, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.calls) != 0 {
		t.Fatalf("the dry run changed the host: %v", h.calls)
	}
	if dry.Healthy || len(dry.Left) == 0 {
		t.Errorf("dry run on an affected host: healthy=%v left=%v", dry.Healthy, dry.Left)
	}
	applied, err := Run(ctx, h, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(strip(applied.Actions), strip(dry.Actions)) {
		t.Fatalf("apply's plan differs from the dry run's:\n%+v\n%+v", applied.Actions, dry.Actions)
	}
	for _, a := range applied.Actions {
		if !a.Done || a.Error != "" {
			t.Errorf("not done: %+v", a)
		}
	}
	if !applied.Healthy || len(applied.Left) != 0 {
		t.Fatalf("after --apply: healthy=%v left=%v\n%s", applied.Healthy, applied.Left, Text(applied))
	}
	wantStops := []string{"refresh-policy-routes@ecse1a2b3c.timer", "refresh-policy-routes@ecse1a2b3c.service", "policy-routes@ecse1a2b3c.service"}
	if got := targets(applied.Actions, KindStop); !slices.Equal(got, wantStops) {
		t.Errorf("stops %v, want %v", got, wantStops)
	}
	wantMasks := []string{"refresh-policy-routes@ecs0a0b0c.timer", "refresh-policy-routes@ecs0a0b0c.service", "policy-routes@ecs0a0b0c.service",
		"refresh-policy-routes@ecse1a2b3c.timer", "refresh-policy-routes@ecse1a2b3c.service", "policy-routes@ecse1a2b3c.service"}
	if got := targets(applied.Actions, KindMask); !slices.Equal(got, wantMasks) {
		t.Errorf("masks %v, want %v", got, wantMasks)
	}
	wantLocks := []string{doctor.LockDir + "/ecs0a0b0c", doctor.LockDir + "/ecs0d0e0f", doctor.LockDir + "/ecse1a2b3c"}
	if got := targets(applied.Actions, KindRemoveLock); !slices.Equal(got, wantLocks) {
		t.Errorf("lock removals %v, want %v", got, wantLocks)
	}
	if got := targets(applied.Actions, KindPlaceUdev); !slices.Equal(got, []string{udevoverride.Path}) {
		t.Errorf("udev: %v", got)
	}
	if st, _ := udevoverride.Inspect(h.root); st != udevoverride.Ours {
		t.Errorf("override after apply: %s", st)
	}
	if _, err := os.Stat(filepath.Join(h.root, doctor.LockDir, "ens6")); err != nil {
		t.Errorf("the live lock of ens6 was removed: %v", err)
	}
	// One mask call (one daemon reload) for all units.
	if n := len(slices.DeleteFunc(slices.Clone(h.calls), func(c string) bool { return !strings.HasPrefix(c, "mask-runtime") })); n != 1 {
		t.Errorf("%d mask calls: %v", n, h.calls)
	}

	h.calls = nil
	again, err := Run(ctx, h, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Actions) != 0 || len(h.calls) != 0 || !again.Healthy {
		t.Errorf("second --apply is not a no-op: %+v calls %v", again, h.calls)
	}
	if txt := Text(again); !strings.Contains(txt, "nothing to do") {
		t.Errorf("second --apply text: %s", txt)
	}
}

// Templates and a present interface's units are never in the plan, nor is
// a live lock of a present interface.
func TestPlanNeverTouchesTemplatesOrPresentInterfaces(t *testing.T) {
	f := &doctor.Findings{
		Units: []doctor.Unit{
			{Name: "policy-routes@.service", Load: "loaded", Active: "active", Interface: ""},
			{Name: "refresh-policy-routes@.timer", Load: "loaded", Active: "failed", Interface: ""},
			{Name: "policy-routes@ens5.service", Load: "loaded", Active: "activating", Interface: "ens5", InterfaceExists: true},
			{Name: "refresh-policy-routes@ens5.timer", Load: "loaded", Active: "failed", Interface: "ens5", InterfaceExists: true},
			{Name: "policy-routes@ecs1.service", Load: "loaded", Active: "activating", Interface: "ecs1"},
		},
		LockFiles: []doctor.LockFile{
			{Interface: "ens5", Path: doctor.LockDir + "/ens5", PID: 10, OwnerAlive: true, InterfaceExists: true, Reason: "held by PID 10"},
			{Interface: "ecs1", Path: doctor.LockDir + "/ecs1", PID: 11, OwnerAlive: true, Reason: "owner PID 11 is alive, looping on a missing interface"},
			{Interface: "ecs2", Path: doctor.LockDir + "/ecs2", PID: 12, OwnerAlive: true, Reason: "owner PID 12 is alive, looping on a missing interface"},
		},
		Udev: doctor.Udev{State: udevoverride.Ours, Override: udevoverride.Path, Ours: true},
	}
	actions, _ := Plan(f)
	for _, a := range actions {
		if strings.Contains(a.Target, "@.") || strings.Contains(a.Target, "ens5") {
			t.Errorf("plan touches a template or a present interface: %+v", a)
		}
		if a.Target == doctor.LockDir+"/ecs2" {
			t.Errorf("a live owner's lock whose units are not stopped is in the plan: %+v", a)
		}
	}
	if got := targets(actions, KindRemoveLock); !slices.Equal(got, []string{doctor.LockDir + "/ecs1"}) {
		t.Errorf("locks: %v (ecs1's owner ends with its stopped unit)", got)
	}
	if got := targets(actions, KindStop); !slices.Equal(got, []string{"policy-routes@ecs1.service"}) {
		t.Errorf("stops: %v", got)
	}
}

// A file of the override's name that is not ours (the EKS AMI's empty
// mask) is left alone and said so; nothing reloads udev.
func TestForeignOverrideLeftAlone(t *testing.T) {
	h := newFakeHost(t)
	h.affected()
	h.write(udevoverride.Path, "")
	r, err := Run(context.Background(), h, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := append(targets(r.Actions, KindPlaceUdev), targets(r.Actions, KindReloadUdev)...); len(got) != 0 {
		t.Errorf("foreign override: %v planned", got)
	}
	if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "not ours") || !strings.Contains(r.Notes[0], "left alone") {
		t.Errorf("notes: %v", r.Notes)
	}
	if b, _ := os.ReadFile(filepath.Join(h.root, udevoverride.Path)); len(b) != 0 {
		t.Errorf("the foreign file changed: %q", b)
	}
	if !r.Healthy {
		t.Errorf("an empty mask is a cure too: left %v", r.Left)
	}
}

// The lock verdicts: dead owner, reused PID, no PID and a FIFO are removed;
// a live owner of a present interface is never; a live stuck owner whose
// unit is not stopped (started by hand) is left and named.
func TestLockVerdicts(t *testing.T) {
	h := newFakeHost(t)
	h.proc("4100", "ens6", "start")
	h.proc("5000", "ecsdead", "start") // by hand: no unit stops it
	h.write("/proc/777/cmdline", "/usr/sbin/sshd\x00")
	h.lock("ens6", "4100\n")
	h.lock("ecs1", "999999\n")
	h.lock("ecs2", "777\n")
	h.lock("ecs3", "garbage\n")
	h.lock("ecsdead", "5000\n")
	r, err := Run(context.Background(), h, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{doctor.LockDir + "/ecs1", doctor.LockDir + "/ecs2", doctor.LockDir + "/ecs3"}
	if got := targets(r.Actions, KindRemoveLock); !slices.Equal(got, want) {
		t.Errorf("removed %v, want %v", got, want)
	}
	for _, keep := range []string{"ens6", "ecsdead"} {
		if _, err := os.Stat(filepath.Join(h.root, doctor.LockDir, keep)); err != nil {
			t.Errorf("lock %s removed: %v", keep, err)
		}
	}
	if r.Healthy || !slices.ContainsFunc(r.Left, func(s string) bool { return strings.Contains(s, "ecsdead") }) {
		t.Errorf("the stuck hand-started owner must be left and named: %v", r.Left)
	}
}

// A lock planned after a stop whose owner survives is left, not removed.
func TestLockOwnerSurvivingStopIsLeft(t *testing.T) {
	h := newFakeHost(t)
	h.proc("6000", "ecsx", "start")
	h.lock("ecsx", "6000\n")
	h.unit("policy-routes@ecsx.service", "loaded", "activating", "start")
	h.fail["stop policy-routes@ecsx.service"] = errors.New("job timeout")
	r, err := Run(context.Background(), h, true)
	if err != nil {
		t.Fatal(err)
	}
	var lock Action
	for _, a := range r.Actions {
		if a.Kind == KindRemoveLock {
			lock = a
		}
	}
	if lock.Done || !strings.Contains(lock.Error, "left") {
		t.Errorf("lock of a surviving owner: %+v", lock)
	}
	if _, err := os.Stat(filepath.Join(h.root, doctor.LockDir, "ecsx")); err != nil {
		t.Errorf("removed: %v", err)
	}
	if r.Healthy || len(r.Left) < 2 {
		t.Errorf("left: %v", r.Left)
	}
}

func TestRefusals(t *testing.T) {
	opened := false
	e := env{euid: func() int { return 1000 }, systemd: func() bool { return true },
		open: func(context.Context, string) (Host, func(), error) { opened = true; return nil, nil, errors.New("x") }}
	var out, errb bytes.Buffer
	if code := mainWith(context.Background(), []string{"--apply"}, &out, &errb, "t", e); code != 2 || !strings.Contains(errb.String(), "root") {
		t.Errorf("not root: exit %d %q", code, errb.String())
	}
	e.euid = func() int { return 0 }
	e.systemd = func() bool { return false }
	errb.Reset()
	if code := mainWith(context.Background(), nil, &out, &errb, "t", e); code != 2 || !strings.Contains(errb.String(), "systemd is not running") {
		t.Errorf("no systemd: exit %d %q", code, errb.String())
	}
	if opened {
		t.Error("a refused repair opened the door")
	}
	if code := mainWith(context.Background(), []string{"extra"}, &out, &errb, "t", e); code != 2 {
		t.Errorf("usage: exit %d", code)
	}
}

// The CLI's JSON is the documented shape.
func TestJSONShape(t *testing.T) {
	h := newFakeHost(t)
	h.affected()
	e := env{euid: func() int { return 0 }, systemd: func() bool { return true },
		open: func(context.Context, string) (Host, func(), error) { return h, func() {}, nil }}
	var out, errb bytes.Buffer
	code := mainWith(context.Background(), []string{"--json"}, &out, &errb, "t", e)
	if code != 1 {
		t.Fatalf("dry run on an affected host: exit %d %s", code, errb.String())
	}
	var doc map[string]any
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"apply", "actions", "left", "healthy"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, out.String())
		}
	}
	a := doc["actions"].([]any)[0].(map[string]any)
	for _, k := range []string{"kind", "target", "why", "done"} {
		if _, ok := a[k]; !ok {
			t.Errorf("action lacks %q: %v", k, a)
		}
	}
	if len(h.calls) != 0 {
		t.Errorf("dry run changed the host: %v", h.calls)
	}
	out.Reset()
	if code := mainWith(context.Background(), []string{"--apply"}, &out, &errb, "t", e); code != 0 || !strings.Contains(out.String(), "HEALTHY") {
		t.Errorf("--apply: exit %d\n%s", code, out.String())
	}
}

// README's cure (Migrate: doctor, repair, repair --apply) reaches healthy
// on the bug report's host plus a live lock whose owner runs as
// `bash -x setup-policy-routes`, which it keeps.
func TestReadmeCureReachesHealthy(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	sec := string(b)
	if i := strings.Index(sec, "## Migrate an affected host"); i >= 0 {
		sec = sec[i:]
	}
	if i := strings.Index(sec[3:], "\n## "); i >= 0 {
		sec = sec[:i+3]
	}
	for _, step := range []string{"\nec2-policy-routes doctor ", "\nec2-policy-routes repair ", "\nec2-policy-routes repair --apply "} {
		if !strings.Contains(sec, step) {
			t.Errorf("README's Migrate section lacks the step %q", strings.TrimSpace(step))
		}
	}
	h := newFakeHost(t)
	h.affected()
	h.mkdir("/sys/class/net/ens7")
	h.write("/proc/5200/cmdline", "bash\x00-x\x00/usr/bin/setup-policy-routes\x00ens7\x00start\x00")
	h.lock("ens7", "5200\n")
	h.unit("policy-routes@ens7.service", "loaded", "activating", "start")
	if r, err := Run(context.Background(), h, false); err != nil || r.Healthy {
		t.Fatalf("doctor/repair before: %v healthy=%v", err, r.Healthy)
	}
	r, err := Run(context.Background(), h, true)
	if err != nil || !r.Healthy {
		t.Fatalf("repair --apply: %v\n%s", err, Text(r))
	}
	if _, err := os.Stat(filepath.Join(h.root, doctor.LockDir, "ens7")); err != nil {
		t.Errorf("the live lock of `bash -x setup-policy-routes ens7` was removed: %v", err)
	}
	for _, a := range r.Actions {
		if strings.Contains(a.Target, "ens7") {
			t.Errorf("touched ens7: %+v", a)
		}
	}
}
