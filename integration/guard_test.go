package integration

import (
	"os"
	"slices"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"golang.org/x/sys/unix"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
)

// TestSecurityHostNetnsFromContainer: the plugin runs inside a container
// whose network namespace is not the host's (as the ECS agent's plugins do
// when the agent is not in host networking), and CNI_NETNS is a bind mount
// of the host's namespace. Its own-namespace guard alone would not see it;
// the PID 1 guard refuses it, code 7, for ADD, CHECK and DEL, before any
// change, even with CNI_IFNAME naming a real host interface.
func TestSecurityHostNetnsFromContainer(t *testing.T) {
	rep := scenario(t, "X6", "run inside a container's namespace with CNI_NETNS a bind mount of the host's: refused")
	h.RequireRoot(t)
	hostIf := hostInterface(t)
	container := h.NewNetns(t)
	alias := "/run/netns/" + h.RandName("ec2pr-hostbind")
	if err := os.WriteFile(alias, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(alias) })
	// The test runs in the host namespace (PID 1's may not be readable
	// here: a sandbox init), so its own namespace stands for the host's.
	if err := unix.Mount("/proc/self/ns/net", alias, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount the host namespace: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(alias, unix.MNT_DETACH) })
	before := hostState(t)
	for _, verb := range []string{"ADD", "CHECK", "DEL"} {
		env := h.Env{Command: verb, ContainerID: "in-container", Netns: alias, IfName: hostIf, Path: "/nonexistent"}
		p := startPlugin(t, env, conf11(`"linkTimeout":"1s"`), inContainer(container)...)
		r := p.wait(t, 30e9)
		mustFail(t, r, verb+" from inside a container", types.ErrInvalidNetworkConfig, "PID 1")
		assertNoResidue(t, nil, p)
	}
	if after := hostState(t); !slices.Equal(after, before) {
		t.Fatalf("host rules/routes changed:\n before %q\n after  %q", before, after)
	}
	rep.add("plugin in its own netns (ip netns exec), CNI_NETNS a bind mount of /proc/1/ns/net, CNI_IFNAME=%s: ADD, CHECK, DEL exit 1 code 7 naming PID 1; host rules and routes identical", hostIf)
}

// inContainer is a wrapper running the plugin as a container's process: in
// a PID namespace whose PID 1 (a shell that stays, so it keeps the host's
// network namespace) is the host's init as the plugin sees it, and in the
// container's own network namespace.
func inContainer(ns *h.Netns) []string {
	return []string{"unshare", "--pid", "--fork", "--mount-proc", "sh", "-c",
		`ip netns exec ` + ns.Name + ` "$0"; exit $?`}
}
