package plugin

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"

	"github.com/ec2-policy-routes/ec2-policy-routes/internal/imdsfake"
	"github.com/ec2-policy-routes/ec2-policy-routes/internal/netnstest"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/blocking"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// The documented rule for a MAC IMDS does not list: configured
// imds.awaitUnlisted wins; unset, only a physical NIC (no kernel link kind)
// is waited for.
func TestAwaitsListing(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		name   string
		conf   *bool
		link   plan.Link
		awaits bool
	}{
		{"physical NIC (ena), default", nil, plan.Link{Kind: "device"}, true},
		{"veth, default", nil, plan.Link{Kind: "veth"}, false},
		{"vlan (branch ENI), default", nil, plan.Link{Kind: "vlan"}, false},
		{"veth, awaitUnlisted true", &yes, plan.Link{Kind: "veth"}, true},
		{"physical NIC, awaitUnlisted false", &no, plan.Link{Kind: "device"}, false},
	} {
		cfg := mdConfig(t, "")
		cfg.IMDS.AwaitUnlisted = tc.conf
		if got := awaitsListing(cfg, tc.link); got != tc.awaits {
			t.Errorf("%s: awaits %v, want %v", tc.name, got, tc.awaits)
		}
	}
}

// startCounted serves f through a handler that signals once n requests
// were answered.
func startCounted(t *testing.T, f *imdsfake.Fake, n int64) (string, <-chan struct{}) {
	var count atomic.Int64
	reached := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.ServeHTTP(w, r)
		if count.Add(1) == n {
			close(reached)
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(f.Close)
	return srv.URL, reached
}

func chainedStdin(url, sandbox, extra string) string {
	return fmt.Sprintf(`{"cniVersion":"1.0.0","name":"n","type":"ec2-policy-routes","linkTimeout":%q,"imds":{"endpoint":%q,"timeout":"3s"},`+
		`"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":%q,"sandbox":%q}],"ips":[{"interface":0,"address":"10.0.1.25/24","gateway":"10.0.1.1"}]}}`,
		extra, url, mdENI1, sandbox)
}

// Chained mode: the whole lookup (token + 5 GETs) is done while ADD still
// waits for the link, which arrives only after IMDS has answered; ADD then
// applies without asking IMDS again. Needs root; skips otherwise.
func TestAddLooksUpWhileWaitingForTheLink(t *testing.T) {
	nsh, nl := netnstest.New(t)
	f := imdsfake.New(mdPrimary, imdsfake.ENI{MAC: mdENI1, DeviceNumber: 1, LocalIPv4s: []string{"10.0.1.25", "10.0.1.26"}, SubnetIPv4: "10.0.1.0/24"})
	url, answered := startCounted(t, f, 6)
	p := &Plugin{Metadata: NewIMDSMetadata(), StateDir: t.TempDir()}
	args := &skel.CmdArgs{ContainerID: "c", IfName: "eth0", Netns: netnsPath(nsh), StdinData: []byte(chainedStdin(url, netnsPath(nsh), "5s"))}
	done := make(chan error, 1)
	go func() { done <- p.Add(args) }()
	select {
	case <-answered:
	case err := <-done:
		t.Fatalf("ADD ended before IMDS answered, without its link: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("IMDS not asked while the link was absent")
	}
	testENI(t, nl, "eth0", "peer0", mdENI1, "10.0.1.25/24")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if f.Count() != 6 || f.TokensIssued() != 1 {
		t.Errorf("%d requests, %d tokens, want 6 and 1", f.Count(), f.TokensIssued())
	}
	rules, err := nl.RuleList(netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range rules {
		if r.Table == 10001 {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d rules in table 10001, want 2 (both IMDS addresses)", n)
	}
}

// An ADD that fails while its early lookup is still in flight (here the
// link never comes, IMDS hangs) ends at linkTimeout with the link's error,
// and no lookup goroutine outlives it. Needs root; skips otherwise.
func TestAddLeavesNoLookupRunning(t *testing.T) {
	nsh, _ := netnstest.New(t)
	f := imdsfake.New(mdPrimary)
	f.SetHang(true)
	url := imdsfake.Start(t, f)
	p := &Plugin{Metadata: NewIMDSMetadata(), StateDir: t.TempDir()}
	args := &skel.CmdArgs{ContainerID: "c", IfName: "eth0", Netns: netnsPath(nsh), StdinData: []byte(chainedStdin(url, netnsPath(nsh), "300ms"))}
	t0 := time.Now()
	wantCode(t, p.Add(args), types.ErrTryAgainLater, "timed out after linkTimeout 300ms")
	if el := time.Since(t0); el > 300*time.Millisecond+200*time.Millisecond {
		t.Errorf("ADD took %v", el)
	}
	// stop() waited for the lookup; its goroutine is on its way out.
	deadline := time.Now().Add(time.Second)
	for lookupRunning() {
		if time.Now().After(deadline) {
			t.Fatal("a lookup goroutine outlived ADD")
		}
		runtime.Gosched()
	}
}

func lookupRunning() bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "plugin.(*lookups).start")
}

// Standalone mode: the session token is fetched while the link is awaited,
// and a link slower than imds.timeout does not eat the lookup's budget,
// which starts with the lookup. Needs root; skips otherwise.
func TestAddStandalonePrimesTokenAndKeepsBudget(t *testing.T) {
	nsh, nl := netnstest.New(t)
	f := imdsfake.New(mdPrimary, imdsfake.ENI{MAC: mdENI1, DeviceNumber: 1, LocalIPv4s: []string{"10.0.1.25"}, SubnetIPv4: "10.0.1.0/24"})
	url, tokenServed := startCounted(t, f, 1)
	p := &Plugin{Metadata: NewIMDSMetadata(), StateDir: t.TempDir()}
	stdin := fmt.Sprintf(`{"cniVersion":"0.3.0","name":"n","type":"ec2-policy-routes","linkTimeout":"5s","imds":{"endpoint":%q,"timeout":"300ms"}}`, url)
	args := &skel.CmdArgs{ContainerID: "c", IfName: "eth0", Netns: netnsPath(nsh), StdinData: []byte(stdin)}
	done := make(chan error, 1)
	go func() { done <- p.Add(args) }()
	select {
	case <-tokenServed:
	case err := <-done:
		t.Fatalf("ADD ended without its link: %v", err)
	}
	if f.Count() != 1 || f.TokensIssued() != 1 {
		t.Fatalf("before the link: %v, want the token alone", f.Requests())
	}
	// The ENI arrives later than imds.timeout after the token.
	time.Sleep(400 * time.Millisecond)
	testENI(t, nl, "eth0", "peer0", mdENI1, "10.0.1.25/24")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if f.Count() != 6 || f.TokensIssued() != 1 {
		t.Errorf("%d requests, %d tokens, want 6 and 1: %v", f.Count(), f.TokensIssued(), f.Requests())
	}
}

// SIGTERM while ADD waits for a hanging IMDS: the handler goes in when ADD
// starts waiting for the lookup, and the signal ends ADD at once with code
// 11, nothing installed. Needs root; skips otherwise.
func TestAddSignalDuringLookup(t *testing.T) {
	nsh, nl := netnstest.New(t)
	testENI(t, nl, "eth0", "peer0", mdENI1, "10.0.1.25/24")
	f := mdFake()
	f.SetHang(true)
	url := imdsfake.Start(t, f)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	waiting := make(chan struct{})
	var once sync.Once
	ctx = blocking.WithHook(ctx, func() { once.Do(func() { close(waiting) }) })
	p := &Plugin{Ctx: ctx, Metadata: NewIMDSMetadata(), StateDir: t.TempDir()}
	stdin := fmt.Sprintf(`{"cniVersion":"0.3.0","name":"n","type":"ec2-policy-routes","imds":{"endpoint":%q,"timeout":"5s"}}`, url)
	done := make(chan error, 1)
	go func() {
		done <- p.Add(&skel.CmdArgs{ContainerID: "c", IfName: "eth0", Netns: netnsPath(nsh), StdinData: []byte(stdin)})
	}()
	<-waiting
	sent := time.Now()
	cancel(ErrSignal())
	wantCode(t, <-done, types.ErrTryAgainLater, "interrupted by signal while querying IMDS", "nothing was installed")
	if lag := time.Since(sent); lag > 100*time.Millisecond {
		t.Errorf("ADD ended %v after the signal", lag)
	}
	if rules, _ := nl.RuleList(netlink.FAMILY_V4); len(rules) != 3 {
		t.Errorf("rules after the signal: %v", rules)
	}
}
