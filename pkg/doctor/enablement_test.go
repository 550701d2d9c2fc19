package doctor

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// enablementHost fabricates what ec2-net-utils 2.7.x's udev rule leaves in
// /etc/systemd/system: the timer WantedBy=setup-policy-routes@X.service,
// for two handed-back ENIs (missing), the present ens5, plus a template
// link and a foreign link in an instance-named directory.
func (f *fixture) enablementHost() {
	const tmpl = "/usr/lib/systemd/system/"
	for _, x := range []string{"ecse1a2b3c", "ecs0a0b0c", "ens5"} {
		f.symlink(tmpl+"refresh-policy-routes@.timer", UnitConfigDir+"/setup-policy-routes@"+x+".service.wants/refresh-policy-routes@"+x+".timer")
	}
	f.symlink(tmpl+"policy-routes@.service", UnitConfigDir+"/multi-user.target.wants/policy-routes@ecse1a2b3c.service")
	f.symlink(tmpl+"policy-routes@.service", UnitConfigDir+"/multi-user.target.wants/policy-routes@ens5.service")
	f.symlink(tmpl+"policy-routes@.service", UnitConfigDir+"/multi-user.target.wants/policy-routes@.service")
	f.symlink("/usr/lib/systemd/system/sshd.service", UnitConfigDir+"/multi-user.target.wants/sshd.service")
	f.symlink(tmpl+"x.service", UnitConfigDir+"/policy-routes@ecs0a0b0c.service.requires/x.service")
	f.write(UnitConfigDir+"/setup-policy-routes@ecs0a0b0c.service.wants/refresh-policy-routes@ecs0a0b0c.service", "not a link\n")
}

func TestEnablementFindingsAndCheck(t *testing.T) {
	f := newFixture(t)
	f.enablementHost()
	r, err := Run(context.Background(), Options{Root: f.root, SkipUnits: true, SkipNetns: true})
	if err != nil {
		t.Fatal(err)
	}
	c := checkByID(t, r, CheckEnablement)
	if c.Status != StatusWarn || !strings.Contains(c.Summary, "3 enablement links") || !strings.Contains(c.Summary, "2 interfaces missing") ||
		!strings.Contains(c.Hint, "repair --apply") {
		t.Errorf("check: %+v", c)
	}
	for _, d := range c.Details {
		if strings.Contains(d, "ens5") || strings.Contains(d, "@.") || strings.Contains(d, "sshd") || strings.Contains(d, "x.service") {
			t.Errorf("details name a present interface, a template or a foreign link: %s", d)
		}
	}
	if !r.Healthy {
		t.Error("leftover enablement is a warning, not a problem")
	}

	fs, err := Read(context.Background(), Options{Root: f.root, SkipUnits: true, SkipNetns: true})
	if err != nil {
		t.Fatal(err)
	}
	var links []string
	for _, l := range fs.Enablement.Links {
		links = append(links, l.Path)
	}
	slices.Sort(links)
	want := []string{
		UnitConfigDir + "/multi-user.target.wants/policy-routes@ecse1a2b3c.service",
		UnitConfigDir + "/multi-user.target.wants/policy-routes@ens5.service",
		UnitConfigDir + "/setup-policy-routes@ecs0a0b0c.service.wants/refresh-policy-routes@ecs0a0b0c.timer",
		UnitConfigDir + "/setup-policy-routes@ecse1a2b3c.service.wants/refresh-policy-routes@ecse1a2b3c.timer",
		UnitConfigDir + "/setup-policy-routes@ens5.service.wants/refresh-policy-routes@ens5.timer",
	}
	if !slices.Equal(links, want) {
		t.Errorf("links %v, want %v", links, want)
	}
	dirs := map[string]UnitDir{}
	for _, d := range fs.Enablement.Dirs {
		dirs[d.Path] = d
	}
	if len(dirs) != 4 {
		t.Errorf("instance-named dirs: %+v", fs.Enablement.Dirs)
	}
	if d := dirs[UnitConfigDir+"/setup-policy-routes@ecs0a0b0c.service.wants"]; d.Interface != "ecs0a0b0c" || d.InterfaceExists || len(d.Entries) != 2 {
		t.Errorf("ecs0a0b0c's dir: %+v", d)
	}
	if d := dirs[UnitConfigDir+"/setup-policy-routes@ens5.service.wants"]; !d.InterfaceExists {
		t.Errorf("ens5's dir: %+v", d)
	}
}

// Debian 12's 2.3.0 units have no [Install]: nothing is enabled, no
// /etc/systemd/system may exist at all.
func TestEnablementNone(t *testing.T) {
	f := newFixture(t)
	r, err := Run(context.Background(), Options{Root: f.root, SkipUnits: true, SkipNetns: true})
	if err != nil {
		t.Fatal(err)
	}
	if c := checkByID(t, r, CheckEnablement); c.Status != StatusOK {
		t.Errorf("no /etc/systemd/system: %+v", c)
	}
	f.symlink("/usr/lib/systemd/system/policy-routes@.service", UnitConfigDir+"/multi-user.target.wants/policy-routes@ens5.service")
	r, _ = Run(context.Background(), Options{Root: f.root, SkipUnits: true, SkipNetns: true})
	if c := checkByID(t, r, CheckEnablement); c.Status != StatusOK || !strings.Contains(c.Summary, "1 links for present") {
		t.Errorf("a present interface's enablement: %+v", c)
	}
}

func TestEnabledUnitName(t *testing.T) {
	for name, want := range map[string]bool{
		"policy-routes@ecs1.service": true, "refresh-policy-routes@ecs1.service": true, "refresh-policy-routes@ecs1.timer": true,
		"policy-routes@.service": false, "refresh-policy-routes@.timer": false, "policy-routes@ecs1.timer": false,
		"setup-policy-routes@ecs1.service": false, "xpolicy-routes@ecs1.service": false, "sshd.service": false,
	} {
		if got := EnabledUnitName(name); got != want {
			t.Errorf("EnabledUnitName(%q) = %v", name, got)
		}
	}
	for name, want := range map[string]string{
		"setup-policy-routes@ecs1.service.wants": "ecs1", "policy-routes@ecs1.service.requires": "ecs1",
		"refresh-policy-routes@ecs1.timer.wants": "ecs1", "multi-user.target.wants": "", "setup-policy-routes@.service.wants": "",
		"foo@ecs1.service.wants": "", "setup-policy-routes@ecs1.service": "",
	} {
		if got := UnitDirInstance(name); got != want {
			t.Errorf("UnitDirInstance(%q) = %q, want %q", name, got, want)
		}
	}
}

// README's doctor table has a row for every check the doctor emits.
func TestReadmeTableListsEveryCheck(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	sec := string(b)
	if i := strings.Index(sec, "### doctor"); i >= 0 {
		sec = sec[i:]
	}
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	var rows []string
	for _, line := range strings.Split(sec, "\n") {
		if strings.HasPrefix(line, "| `") {
			rows = append(rows, strings.SplitN(line, " | ", 2)[0])
		}
	}
	r, err := Run(context.Background(), Options{Root: newFixture(t).root, SkipUnits: true, SkipNetns: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range r.Checks {
		if !slices.ContainsFunc(rows, func(row string) bool { return strings.Contains(row, "`"+c.ID+"`") }) {
			t.Errorf("README's doctor table lacks a row for %s", c.ID)
		}
	}
}

// The report carries the links; --prometheus counts them.
func TestEnablementReportAndMetrics(t *testing.T) {
	f := newFixture(t)
	f.enablementHost()
	code, out, _ := run(t, "--prometheus", "--root", f.root, "--systemctl", "none", "--skip-netns")
	if code != 0 {
		t.Fatalf("exit %d (a warning only)\n%s", code, out)
	}
	v := parseProm(t, out)
	if v["ec2_policy_routes_doctor_policy_routes_enablement_links"] != "5" || v["ec2_policy_routes_doctor_policy_routes_enablement_missing_interface"] != "3" {
		t.Errorf("metrics: links %q missing %q", v["ec2_policy_routes_doctor_policy_routes_enablement_links"], v["ec2_policy_routes_doctor_policy_routes_enablement_missing_interface"])
	}
	r, err := Run(context.Background(), Options{Root: f.root, SkipUnits: true, SkipNetns: true})
	if err != nil || len(r.EnablementLinks) != 5 {
		t.Errorf("report links: %v %+v", err, r.EnablementLinks)
	}
}
