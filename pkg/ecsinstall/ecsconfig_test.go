package ecsinstall

import "testing"

func TestConfigValue(t *testing.T) {
	for _, tc := range []struct {
		data, want string
		ok         bool
	}{
		{"", "", false},
		{"ECS_CLUSTER=x\n", "", false},
		{"ECS_CNI_PLUGINS_PATH=/a\n", "/a", true},
		{"  ECS_CNI_PLUGINS_PATH=/a  \r\n", "/a", true},
		{"ECS_CNI_PLUGINS_PATH=/a\nECS_CNI_PLUGINS_PATH=/b", "/b", true}, // last wins, as in ecs-init
		{"ECS_CNI_PLUGINS_PATH =/a\n", "", false},                        // ecs-init takes the key verbatim
		{"#ECS_CNI_PLUGINS_PATH=/a\n", "", false},
	} {
		got, ok := ConfigValue([]byte(tc.data), "ECS_CNI_PLUGINS_PATH")
		if got != tc.want || ok != tc.ok {
			t.Errorf("%q: %q %v, want %q %v", tc.data, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSetAndDropConfigLine(t *testing.T) {
	const k = "ECS_CNI_PLUGINS_PATH"
	for _, tc := range []struct{ in, want string }{
		{"", k + "=/d\n"},
		{"A=1", "A=1\n" + k + "=/d\n"},
		{"A=1\n" + k + "=/old\nB=2\n", "A=1\n" + k + "=/d\nB=2\n"},
		{k + "=/x\nA=1\n" + k + "=/y\n", k + "=/d\nA=1\n"},
		{"A=1\n\n# c\n", "A=1\n\n# c\n" + k + "=/d\n"},
	} {
		if got := string(setConfigLine([]byte(tc.in), k, "/d")); got != tc.want {
			t.Errorf("set %q = %q, want %q", tc.in, got, tc.want)
		}
	}
	out, n, others := dropConfigLine([]byte("A=1\n"+k+"=/d/\n"+k+"=/e\nB=2\n"), k, "/d")
	if string(out) != "A=1\n"+k+"=/e\nB=2\n" || n != 1 || len(others) != 1 {
		t.Errorf("drop: %q %d %v", out, n, others)
	}
}
