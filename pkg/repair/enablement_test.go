package repair

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/doctor"
)

const etcUnits = doctor.UnitConfigDir

// enablement adds what ec2-net-utils 2.7.x's udev rule leaves in
// /etc/systemd/system: refresh-policy-routes@X.timer is
// WantedBy=setup-policy-routes@X.service, for the handed-back ecse1a2b3c
// and ecs0a0b0c and the present ens5; a policy-routes@ link in
// multi-user.target.wants for ecse1a2b3c and ens5; a template link; and a
// directory of the missing ecs0d0e0f holding a file that is not ours.
func (h *fakeHost) enablement() {
	h.t.Helper()
	link := func(target, p string) {
		h.mkdir(filepath.Dir(p))
		if err := os.Symlink(target, filepath.Join(h.root, p)); err != nil {
			h.t.Fatal(err)
		}
	}
	const lib = "/usr/lib/systemd/system/"
	for _, x := range []string{"ecse1a2b3c", "ecs0a0b0c", "ens5"} {
		link(lib+"refresh-policy-routes@.timer", etcUnits+"/setup-policy-routes@"+x+".service.wants/refresh-policy-routes@"+x+".timer")
	}
	link(lib+"policy-routes@.service", etcUnits+"/multi-user.target.wants/policy-routes@ecse1a2b3c.service")
	link(lib+"policy-routes@.service", etcUnits+"/multi-user.target.wants/policy-routes@ens5.service")
	link(lib+"policy-routes@.service", etcUnits+"/multi-user.target.wants/policy-routes@.service")
	h.write(etcUnits+"/setup-policy-routes@ecs0d0e0f.service.wants/notes.txt", "operator's\n")
}

func (h *fakeHost) exists(p string) bool {
	_, err := os.Lstat(filepath.Join(h.root, p))
	return err == nil
}

// The enablement of missing interfaces is disabled in one call, before the
// masks (systemd ignores a masked unit's disable), the emptied directories
// named after them are removed, and nothing of ens5, the template or a
// directory holding something else is touched; the dry run plans the same,
// a second --apply is a no-op.
func TestEnablementDryRunThenApply(t *testing.T) {
	h := newFakeHost(t)
	h.affected()
	h.enablement()
	ctx := context.Background()
	dry, err := Run(ctx, h, false)
	if err != nil || len(h.calls) != 0 {
		t.Fatalf("dry run: %v, calls %v", err, h.calls)
	}
	applied, err := Run(ctx, h, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(strip(applied.Actions), strip(dry.Actions)) {
		t.Fatalf("apply's plan differs from the dry run's:\n%+v\n%+v", applied.Actions, dry.Actions)
	}
	wantDisable := []string{"policy-routes@ecse1a2b3c.service", "refresh-policy-routes@ecs0a0b0c.timer", "refresh-policy-routes@ecse1a2b3c.timer"}
	if got := targets(applied.Actions, KindDisable); !slices.Equal(got, wantDisable) {
		t.Errorf("disables %v, want %v", got, wantDisable)
	}
	wantDirs := []string{etcUnits + "/setup-policy-routes@ecs0a0b0c.service.wants", etcUnits + "/setup-policy-routes@ecse1a2b3c.service.wants"}
	if got := targets(applied.Actions, KindRemoveDir); !slices.Equal(got, wantDirs) {
		t.Errorf("dir removals %v, want %v", got, wantDirs)
	}
	for _, a := range applied.Actions {
		if !a.Done {
			t.Errorf("not done: %+v", a)
		}
	}
	disableAt := slices.IndexFunc(h.calls, func(c string) bool { return strings.HasPrefix(c, "disable ") })
	maskAt := slices.IndexFunc(h.calls, func(c string) bool { return strings.HasPrefix(c, "mask-runtime ") })
	if disableAt < 0 || maskAt < disableAt || h.calls[disableAt] != "disable "+strings.Join(wantDisable, " ") {
		t.Errorf("one disable call before the masks: %v", h.calls)
	}
	for _, gone := range append(wantDirs, etcUnits+"/multi-user.target.wants/policy-routes@ecse1a2b3c.service") {
		if h.exists(gone) {
			t.Errorf("%s is left", gone)
		}
	}
	for _, kept := range []string{
		etcUnits + "/setup-policy-routes@ens5.service.wants/refresh-policy-routes@ens5.timer",
		etcUnits + "/multi-user.target.wants/policy-routes@ens5.service",
		etcUnits + "/multi-user.target.wants/policy-routes@.service",
		etcUnits + "/setup-policy-routes@ecs0d0e0f.service.wants/notes.txt",
	} {
		if !h.exists(kept) {
			t.Errorf("%s was removed", kept)
		}
	}
	rep, err := h.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Checks {
		if c.ID == doctor.CheckEnablement && c.Status != doctor.StatusOK {
			t.Errorf("after --apply: %+v", c)
		}
	}
	h.calls = nil
	again, err := Run(ctx, h, true)
	if err != nil || len(again.Actions) != 0 || len(h.calls) != 0 || !again.Healthy {
		t.Errorf("second --apply is not a no-op: %v %+v calls %v", err, again, h.calls)
	}
}

// The pure plan: only missing interfaces' instances, never a template or a
// present interface's unit or directory, a directory only when it holds
// nothing but links being disabled; no enablement (Debian 12's 2.3.0
// units have no [Install]) plans nothing.
func TestPlanEnablement(t *testing.T) {
	if d, r := planEnablement(doctor.Enablement{}); len(d)+len(r) != 0 {
		t.Fatalf("nothing enabled: %v %v", d, r)
	}
	w := func(x string) string { return etcUnits + "/setup-policy-routes@" + x + ".service.wants" }
	e := doctor.Enablement{
		Links: []doctor.EnabledLink{
			{Path: w("ecs1") + "/refresh-policy-routes@ecs1.timer", Unit: "refresh-policy-routes@ecs1.timer", Interface: "ecs1"},
			{Path: etcUnits + "/a.target.wants/refresh-policy-routes@ecs1.timer", Unit: "refresh-policy-routes@ecs1.timer", Interface: "ecs1"},
			{Path: w("ens5") + "/refresh-policy-routes@ens5.timer", Unit: "refresh-policy-routes@ens5.timer", Interface: "ens5", InterfaceExists: true},
			{Path: etcUnits + "/a.target.wants/policy-routes@.service", Unit: "policy-routes@.service"},
			{Path: w("ecs2") + "/refresh-policy-routes@ecs2.timer", Unit: "refresh-policy-routes@ecs2.timer", Interface: "ecs2"},
		},
		Dirs: []doctor.UnitDir{
			{Path: w("ecs1"), Interface: "ecs1", Entries: []string{"refresh-policy-routes@ecs1.timer"}},
			{Path: w("ens5"), Interface: "ens5", InterfaceExists: true, Entries: []string{"refresh-policy-routes@ens5.timer"}},
			{Path: w("ecs2"), Interface: "ecs2", Entries: []string{"refresh-policy-routes@ecs2.timer", "other.service"}},
			{Path: w("ecs3"), Interface: "ecs3", Entries: []string{}},
			{Path: w("ens6"), Interface: "ens6", InterfaceExists: true, Entries: []string{}},
		},
	}
	disables, dirs := planEnablement(e)
	if got := targets(disables, KindDisable); !slices.Equal(got, []string{"refresh-policy-routes@ecs1.timer", "refresh-policy-routes@ecs2.timer"}) {
		t.Errorf("disables %v", got)
	}
	if !strings.Contains(disables[0].Why, "a.target.wants") || !strings.Contains(disables[0].Why, "missing") {
		t.Errorf("why names every link: %s", disables[0].Why)
	}
	if got := targets(dirs, KindRemoveDir); !slices.Equal(got, []string{w("ecs1"), w("ecs3")}) {
		t.Errorf("dirs %v", got)
	}
	f := &doctor.Findings{Enablement: e, Units: []doctor.Unit{{Name: "policy-routes@ecs9.service", Load: "loaded", Active: "activating", Interface: "ecs9"}}}
	actions, _ := Plan(f)
	var kinds []string
	for _, a := range actions {
		kinds = append(kinds, a.Kind)
	}
	if want := []string{KindStop, KindResetFailed, KindDisable, KindDisable, KindMask, KindMask, KindMask, KindRemoveDir, KindRemoveDir}; !slices.Equal(kinds, want) {
		t.Errorf("plan order %v, want %v", kinds, want)
	}
}

// removeEmptyDir removes only an empty, real directory of
// /etc/systemd/system named after a policy-routes instance.
func TestRemoveEmptyDir(t *testing.T) {
	root := t.TempDir()
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	empty := etcUnits + "/setup-policy-routes@ecs1.service.wants"
	full := etcUnits + "/policy-routes@ecs2.service.requires"
	mk(empty)
	mk(full + "/x.service")
	mk("/sys/class/net/ens5")
	mk(etcUnits + "/setup-policy-routes@ens5.service.wants")
	mk(etcUnits + "/multi-user.target.wants")
	mk("/tmp/setup-policy-routes@ecs3.service.wants")
	if err := os.Symlink("/tmp/setup-policy-routes@ecs3.service.wants", filepath.Join(root, etcUnits, "setup-policy-routes@ecs3.service.wants")); err != nil {
		t.Fatal(err)
	}
	for p, wantErr := range map[string]string{
		empty: "",
		etcUnits + "/setup-policy-routes@ecs9.service.wants": "", // gone already
		full:                                  "not empty",
		etcUnits + "/multi-user.target.wants": "refusing",
		etcUnits + "/setup-policy-routes@.service.wants":          "refusing",
		"/tmp/setup-policy-routes@ecs3.service.wants":             "refusing",
		etcUnits + "/setup-policy-routes@ecs3.service.wants":      "not a directory",
		etcUnits + "/../x/setup-policy-routes@ecs1.service.wants": "refusing",
	} {
		err := removeEmptyDir(root, p)
		if (err == nil) != (wantErr == "") || (err != nil && !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("%s: %v, want %q", p, err, wantErr)
		}
	}
	for _, kept := range []string{full + "/x.service", etcUnits + "/setup-policy-routes@ens5.service.wants", etcUnits + "/multi-user.target.wants", "/tmp/setup-policy-routes@ecs3.service.wants"} {
		if _, err := os.Lstat(filepath.Join(root, kept)); err != nil {
			t.Errorf("%s removed: %v", kept, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, empty)); err == nil {
		t.Error("the empty directory is left")
	}
}
