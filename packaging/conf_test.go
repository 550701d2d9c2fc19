package packaging

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/doctor"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

func readConf(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "conf", rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The shipped network configurations are accepted by the plugin's own
// parser, in the shapes their runtimes pass.
func TestShippedNetworkConfigs(t *testing.T) {
	var list struct {
		CNIVersion string            `json:"cniVersion"`
		Name       string            `json:"name"`
		Plugins    []json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal(readConf(t, "containerd/10-task-eni.conflist"), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Plugins) < 2 {
		t.Fatalf("conflist must chain an ENI plugin before ec2-policy-routes: %d plugins", len(list.Plugins))
	}
	var last struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(list.Plugins[len(list.Plugins)-1], &last)
	if last.Type != "ec2-policy-routes" {
		t.Errorf("last plugin is %q", last.Type)
	}
	// libcni injects cniVersion and name into each plugin of a list.
	var ours map[string]any
	_ = json.Unmarshal(list.Plugins[len(list.Plugins)-1], &ours)
	ours["cniVersion"], ours["name"] = list.CNIVersion, list.Name
	b, _ := json.Marshal(ours)
	if _, err := config.Parse(b); err != nil {
		t.Errorf("containerd conflist entry rejected: %v", err)
	}

	ecs := readConf(t, "ecs/ec2-policy-routes.json")
	cfg, err := config.Parse(ecs)
	if err != nil {
		t.Fatalf("ECS config rejected: %v", err)
	}
	if cfg.CNIVersion != "0.3.0" || cfg.Name != "network-name" || cfg.PrevResult != nil || cfg.LogFile != config.DefaultLogFile {
		t.Errorf("ECS config is not the agent's shape: %+v", cfg)
	}
}

func TestShippedRtProtos(t *testing.T) {
	var named bool
	for _, line := range strings.Split(string(readConf(t, "iproute2/rt_protos.d/ec2-policy-routes.conf")), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) != 2 || f[0] != strconv.Itoa(plan.Protocol) || f[1] != "ec2-policy-routes" {
			t.Errorf("unexpected line %q", line)
		}
		named = true
	}
	if !named {
		t.Error("protocol not named")
	}
}

func TestShippedUdevRule(t *testing.T) {
	rule := string(readConf(t, "udev/"+doctor.UdevRuleName))
	if !strings.Contains(rule, doctor.UdevMarker) {
		t.Errorf("doctor marker %q missing", doctor.UdevMarker)
	}
	var rules []string
	for _, line := range strings.Split(rule, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			rules = append(rules, line)
		}
	}
	idx := func(sub string) int {
		for i, r := range rules {
			if strings.Contains(r, sub) {
				return i
			}
		}
		t.Fatalf("no rule containing %q", sub)
		return -1
	}
	start := idx(`RUN+="/usr/bin/systemctl enable --now --no-block policy-routes@$name.service`)
	for _, skip := range []string{`KERNEL=="ecs*", GOTO="ec2_policy_routes_end"`, `ENV{EC2_POLICY_ROUTES_CNI_OWNED}=="1", GOTO`, `TEST=="/run/ec2-policy-routes-cni-owned/$attr{address}", GOTO`} {
		if i := idx(skip); i > start {
			t.Errorf("skip %q comes after the start rule", skip)
		}
	}
	if end := idx(`LABEL="ec2_policy_routes_end"`); end < start {
		t.Error("label before the start rule")
	}
	// remove handling is upstream's, for every ENI.
	if i := idx(`ACTION=="remove", ENV{ID_NET_DRIVER}=="vif|ena|ixgbevf", RUN+="/usr/bin/systemctl disable --now`); i > idx(`KERNEL=="ecs*"`) {
		t.Error("remove rules must not be skipped for ecs* interfaces")
	}
}

func TestShippedNetworkdDropin(t *testing.T) {
	s := string(readConf(t, "systemd/networkd.conf.d/ec2-policy-routes.conf"))
	if !strings.Contains(s, "[Network]\nManageForeignRoutingPolicyRules=no") {
		t.Errorf("drop-in: %s", s)
	}
}
