package plan

import "testing"

func TestHostNetnsRefusal(t *testing.T) {
	host, agent, task := NetnsID{4, 1}, NetnsID{4, 2}, NetnsID{4, 3}
	for _, tc := range []struct {
		name              string
		target, self, pid NetnsID
		refused           bool
	}{
		{"task namespace from the host", task, host, host, false},
		{"own namespace", host, host, host, true},
		{"inside a container, CNI_NETNS a bind mount of the host's", host, agent, host, true},
		{"inside a container, its own namespace", agent, agent, host, true},
		{"inside a container, a task namespace", task, agent, host, false},
		{"PID 1 unknown (hidepid)", host, agent, NetnsID{}, false},
		{"PID 1 unknown, own namespace", agent, agent, NetnsID{}, true},
	} {
		if got := HostNetnsRefusal(tc.target, tc.self, tc.pid) != ""; got != tc.refused {
			t.Errorf("%s: refused %v, want %v", tc.name, got, tc.refused)
		}
	}
}
