package doctor

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// maxConfFile bounds a configuration file read.
const maxConfFile = 1 << 20

// RtProtosFile is where the package installs the protocol name.
const RtProtosFile = "/etc/iproute2/rt_protos.d/ec2-policy-routes.conf"

func (d *doctor) checkRtProtos() {
	c := Check{ID: CheckRtProtos}
	for _, p := range []string{RtProtosFile, "/usr/share/iproute2/rt_protos.d/ec2-policy-routes.conf", "/usr/lib/iproute2/rt_protos.d/ec2-policy-routes.conf"} {
		if b, err := d.readSmall(p, maxConfFile); err == nil && protoNamed(string(b)) {
			c.Status, c.Summary = StatusOK, p+" names protocol 236"
			d.add(c)
			return
		}
	}
	c.Status = StatusWarn
	c.Summary = "protocol 236 has no name: ip rule / ip route show \"proto 236\" instead of \"proto ec2-policy-routes\""
	c.Hint = "install conf/iproute2/rt_protos.d/ec2-policy-routes.conf as " + RtProtosFile
	d.add(c)
}

func protoNamed(s string) bool {
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "236" {
			return true
		}
	}
	return false
}

func (d *doctor) checkNetworkd() {
	c := Check{ID: CheckNetworkd}
	present := false
	for _, p := range []string{"/usr/lib/systemd/systemd-networkd", "/lib/systemd/systemd-networkd"} {
		if d.exists(p) {
			present = true
		}
	}
	if !present {
		c.Status, c.Summary = StatusSkip, "systemd-networkd not installed"
		d.add(c)
		return
	}
	// networkd.conf, then drop-ins in lexical order across dirs, last wins.
	value, from := "", ""
	files := []string{"/usr/lib/systemd/networkd.conf", "/etc/systemd/networkd.conf"}
	dropins := map[string]string{}
	for _, dir := range []string{"/usr/lib/systemd/networkd.conf.d", "/run/systemd/networkd.conf.d", "/etc/systemd/networkd.conf.d"} {
		ents, _ := os.ReadDir(d.path(dir))
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".conf") {
				dropins[e.Name()] = filepath.Join(dir, e.Name()) // later dir of same name wins
			}
		}
	}
	names := make([]string, 0, len(dropins))
	for n := range dropins {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		files = append(files, dropins[n])
	}
	for _, f := range files {
		b, err := d.readSmall(f, maxConfFile)
		if err != nil {
			continue
		}
		if v, ok := iniValue(string(b), "Network", "ManageForeignRoutingPolicyRules"); ok {
			value, from = v, f
		}
	}
	switch strings.ToLower(value) {
	case "no", "false", "0", "off":
		c.Status, c.Summary = StatusOK, "ManageForeignRoutingPolicyRules=no ("+from+")"
	default:
		c.Status = StatusWarn
		c.Summary = "systemd-networkd manages foreign routing policy rules (ManageForeignRoutingPolicyRules not set to no): a reconfigure may delete rules it did not create in the host namespace"
		c.Hint = "install conf/systemd/networkd.conf.d/ec2-policy-routes.conf in /etc/systemd/networkd.conf.d/"
	}
	d.add(c)
}

// iniValue returns the last value of key in [section] of a systemd INI file.
func iniValue(s, section, key string) (string, bool) {
	cur, val, ok := "", "", false
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' && strings.HasSuffix(line, "]") {
			cur = line[1 : len(line)-1]
			continue
		}
		k, v, found := strings.Cut(line, "=")
		if found && cur == section && strings.TrimSpace(k) == key {
			val, ok = strings.TrimSpace(v), true
		}
	}
	return val, ok
}

// PluginPaths are where runtimes look for the binary.
var PluginPaths = []string{"/opt/cni/bin/ec2-policy-routes", "/amazon-ecs-cni-plugins/ec2-policy-routes"}

func (d *doctor) checkInstalled() {
	c := Check{ID: CheckInstalled}
	var found []string
	for _, p := range PluginPaths {
		if st, err := os.Stat(d.path(p)); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			found = append(found, p)
		}
	}
	if len(found) > 0 {
		c.Status, c.Summary = StatusOK, "plugin binary at "+strings.Join(found, ", ")
	} else {
		c.Status = StatusWarn
		c.Summary = "no executable plugin binary at " + strings.Join(PluginPaths, " or ")
		c.Hint = "install the package, or copy bin/ec2-policy-routes to the runtime's CNI bin directory"
	}
	d.add(c)
}
