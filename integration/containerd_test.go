package integration

// TestContainerdCRI is the executable form of README's "Configure →
// containerd": the shipped conf/containerd/10-task-eni.conflist (host-device
// + static + ec2-policy-routes) under a real containerd (1.6, CRI v1) and
// runc, driven over CRI with the calls the kubelet makes: RunPodSandbox,
// PodSandboxStatus, StopPodSandbox, RemovePodSandbox. The "ENIs" are veth
// ends with known MACs that host-device moves into the pod's namespace.
//
// One pod per ENI, two pods at once: containerd gives every pod the first
// conflist of its conf_dir, and host-device takes its device from the
// configuration only (no CNI_ARGS, no runtime capability containerd would
// fill), so one conf_dir cannot hand two concurrent pods two ENIs. The test
// uses containerd's own answer, per-runtime-handler CNI configuration
// (`cni_conf_dir` of a runtime in the CRI config; a RuntimeClass in
// Kubernetes): handlers eni-a and eni-b each have their own conflist and
// ENI, and the two RunPodSandbox calls run concurrently against one
// containerd. The plain pod uses the default conf_dir, as README says.

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	h "github.com/ec2-policy-routes/ec2-policy-routes/integration/harness"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/state"
)

// podENI is one ENI and the conflist (runtime handler) that hands it out.
type podENI struct {
	handler string
	eni     *h.ENI
	ip, gw  string
	prefix  string
}

func TestContainerdCRI(t *testing.T) {
	tools, why := ctrdTools()
	if why != "" && os.Getenv("CI") == "true" && os.Geteuid() == 0 {
		// .ci/run installs containerd and runc: a skip there would hide
		// that this path is no longer tested.
		t.Fatalf("in CI: %s", why)
	}
	if why != "" {
		t.Skip(why)
	}
	// ENIs first: their cleanup then runs after containerd's shutdown, which
	// may hand them back to the host.
	enis := map[string]*podENI{}
	for i, hd := range []string{"", "eni-a", "eni-b", "eni-c"} {
		enis[hd] = &podENI{
			handler: hd, eni: h.NewENI(t),
			ip: fmt.Sprintf("10.231.%d.25", i+1), gw: fmt.Sprintf("10.231.%d.1", i+1), prefix: fmt.Sprintf("10.231.%d.0/24", i+1),
		}
	}
	c := newCtrd(t, "eni-a", "eni-b", "eni-c")
	for hd, e := range enis {
		c.writeConflist(t, hd, e.eni.MAC, e.ip+"/24", e.gw)
	}
	start := time.Now()
	c.start(t, tools)
	t.Logf("containerd up and image imported in %s", time.Since(start).Round(time.Millisecond))

	t.Run("lifecycle", func(t *testing.T) {
		e := enis[""]
		ctx := testCtx(t)
		p, err := c.runPod(ctx, t, "lifecycle", "")
		if err != nil {
			t.Fatal(err)
		}
		nl := assertPodUp(ctx, t, c, p, e)
		if err := c.stopPod(ctx, p.id); err != nil {
			t.Fatal(err)
		}
		assertPodStopped(t, c, p, e, nl)
		if _, err := c.rt.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: p.id}); err != nil {
			t.Fatalf("RemovePodSandbox: %v", err)
		}
		list, err := c.rt.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{Filter: &cri.PodSandboxFilter{Id: p.id}})
		if err != nil || len(list.Items) != 0 {
			t.Fatalf("ListPodSandbox after RemovePodSandbox: %v %v", err, list)
		}
	})

	t.Run("two pods in parallel, one ENI each", func(t *testing.T) {
		ctx := testCtx(t)
		handlers := []string{"eni-a", "eni-b"}
		pods := make([]*pod, len(handlers))
		errs := make([]error, len(handlers))
		parallel(len(handlers), func(i int) { pods[i], errs[i] = c.runPod(ctx, t, "parallel-"+handlers[i], handlers[i]) })
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if pods[0].netns == pods[1].netns {
			t.Fatalf("both pods in %s", pods[0].netns)
		}
		handles := make([]*netlink.Handle, len(pods))
		for i, p := range pods {
			handles[i] = assertPodUp(ctx, t, c, p, enis[handlers[i]])
		}
		parallel(len(pods), func(i int) { errs[i] = c.stopPod(ctx, pods[i].id) })
		for i, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
			assertPodStopped(t, c, pods[i], enis[handlers[i]], handles[i])
		}
	})

	// The pod's namespace bind mount is gone before StopPodSandbox (an
	// operator's `ip netns del`, a reboot-less cleanup script): containerd
	// then runs CNI DEL with an empty CNI_NETNS, which every plugin of the
	// chain must accept. The namespace itself dies with the pause process,
	// taking the rules, and the veth, with it.
	t.Run("stop after the namespace was removed by hand", func(t *testing.T) {
		e := enis["eni-c"]
		ctx := testCtx(t)
		p, err := c.runPod(ctx, t, "netns-gone", "eni-c")
		if err != nil {
			t.Fatal(err)
		}
		// Without our netlink socket pinning it, the namespace dies with
		// the pause process, as it would on a node.
		assertPodUp(ctx, t, c, p, e).Close()
		var st unix.Stat_t
		if err := unix.Stat(p.netns, &st); err != nil {
			t.Fatalf("stat %s: %v", p.netns, err)
		}
		if err := unix.Unmount(p.netns, unix.MNT_DETACH); err != nil {
			t.Fatalf("umount %s: %v", p.netns, err)
		}
		if err := os.Remove(p.netns); err != nil {
			t.Fatalf("remove %s: %v", p.netns, err)
		}
		if err := c.stopPod(ctx, p.id); err != nil {
			t.Fatalf("StopPodSandbox after the namespace was removed: %v", err)
		}
		if holders := nsHolders(st.Ino); len(holders) > 0 {
			t.Fatalf("namespace of the stopped pod still held by %v", holders)
		}
		c.assertDEL(t, p, "")
		assertNoRuleInHost(t, e)
		assertNoRecord(t, p)
		if _, err := c.rt.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: p.id}); err != nil {
			t.Fatalf("RemovePodSandbox: %v", err)
		}
	})
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// parallel runs fn(0..n-1) at once and waits for all.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); fn(i) }()
	}
	wg.Wait()
}

// assertPodUp: the pod IP CRI reports is the ENI's; in the pod's namespace
// the ENI is eth0, with our rule (protocol 236, which h.Ours selects) and
// table 10000; the host no longer has the ENI. It returns a netlink handle
// in the pod's namespace, which keeps that namespace alive until closed
// (at the latest on t's cleanup).
func assertPodUp(ctx context.Context, t *testing.T, c *ctrd, p *pod, e *podENI) *netlink.Handle {
	t.Helper()
	st, _, err := c.status(ctx, p.id)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != cri.PodSandboxState_SANDBOX_READY || st.GetNetwork().GetIp() != e.ip {
		t.Fatalf("pod %s: state %v, IP %q; want READY, %s", p.name, st.State, st.GetNetwork().GetIp(), e.ip)
	}
	if !strings.HasPrefix(p.netns, netnsDir+"/cni-") {
		t.Fatalf("pod %s: namespace %q is not containerd's cni-… one", p.name, p.netns)
	}
	ns := &h.Netns{Name: strings.TrimPrefix(p.netns, netnsDir+"/"), Path: p.netns}
	nl := ns.Handle(t)
	if l := linkByMAC(t, nl, e.eni.MAC); l == nil || l.Attrs().Name != "eth0" {
		t.Fatalf("pod %s: ENI %s is not eth0 in %s: %v", p.name, e.eni.MAC, p.netns, l)
	}
	rules, routes := h.Ours(t, nl)
	equalSets(t, "rules in "+p.netns, sortedRules(rules), []string{fmt.Sprintf("from %s/32 lookup 10000 prio 10000", e.ip)})
	equalSets(t, "routes in "+p.netns, routeSet(routes), []string{
		"table 10000 default via " + e.gw,
		fmt.Sprintf("table 10000 %s src %s", e.prefix, e.ip),
	})
	if l := linkByMAC(t, nil, e.eni.MAC); l != nil {
		t.Fatalf("pod %s: ENI still in the host as %s", p.name, l.Attrs().Name)
	}
	return nl
}

// assertPodStopped: after StopPodSandbox, whose CNI DEL reached the plugin
// and succeeded, the pod's namespace is unmounted and, seen through nl
// (which kept it alive), holds nothing of ours; the
// ENI is back in the host (host-device's DEL) without our mark, and
// nothing of ours is left in the host namespace or the state directory.
func assertPodStopped(t *testing.T, c *ctrd, p *pod, e *podENI, nl *netlink.Handle) {
	t.Helper()
	c.assertDEL(t, p, p.netns)
	if _, err := os.Lstat(p.netns); err == nil {
		t.Fatalf("pod %s: namespace %s still there after StopPodSandbox", p.name, p.netns)
	}
	assertNothingOurs(t, nl)
	nl.Close()
	l := linkByMAC(t, nil, e.eni.MAC)
	if l == nil {
		t.Fatalf("pod %s: ENI %s not back in the host after StopPodSandbox", p.name, e.eni.MAC)
	}
	if strings.HasPrefix(l.Attrs().Alias, "ec2-policy-routes:") {
		t.Fatalf("pod %s: returned ENI %s still carries our mark %q", p.name, l.Attrs().Name, l.Attrs().Alias)
	}
	assertNoRuleInHost(t, e)
	assertNoRecord(t, p)
}

// assertNoRuleInHost: no rule or route of ours for the ENI's address in the
// host namespace (other tests may own protocol-236 objects elsewhere).
func assertNoRuleInHost(t *testing.T, e *podENI) {
	t.Helper()
	host, err := netlink.NewHandle()
	if err != nil {
		t.Fatalf("netlink: %v", err)
	}
	defer host.Close()
	rules, routes := h.Ours(t, host)
	for _, r := range rules {
		if r.Src != nil && r.Src.IP.String() == e.ip {
			t.Fatalf("rule of ours in the host namespace: %v", r)
		}
	}
	for _, r := range routes {
		if (r.Src != nil && r.Src.String() == e.ip) || (r.Gw != nil && r.Gw.String() == e.gw) {
			t.Fatalf("route of ours in the host namespace: %v", r)
		}
	}
}

// assertNoRecord: no altname ownership record left for the pod's eth0.
func assertNoRecord(t *testing.T, p *pod) {
	t.Helper()
	if rec, err := (state.Store{Dir: state.DefaultDir}).Load(p.id, "eth0"); err != nil || rec != nil {
		t.Fatalf("pod %s: state record left: %+v %v", p.name, rec, err)
	}
}

// linkByMAC finds a link by MAC in nl's namespace (nil: the host's).
func linkByMAC(t *testing.T, nl *netlink.Handle, mac net.HardwareAddr) netlink.Link {
	t.Helper()
	var links []netlink.Link
	var err error
	if nl == nil {
		links, err = netlink.LinkList()
	} else {
		links, err = nl.LinkList()
	}
	if err != nil {
		t.Fatalf("list links: %v", err)
	}
	for _, l := range links {
		if l.Attrs().HardwareAddr.String() == mac.String() {
			return l
		}
	}
	return nil
}

// nsHolders lists processes whose network namespace is inode ino.
func nsHolders(ino uint64) []int {
	want := fmt.Sprintf("net:[%d]", ino)
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		if l, _ := os.Readlink("/proc/" + e.Name() + "/ns/net"); l == want {
			out = append(out, pid)
		}
	}
	return out
}
