package linkwait

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ec2-policy-routes/ec2-policy-routes/internal/netnstest"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/blocking"
)

func testNetns(t *testing.T) (netns.NsHandle, *netlink.Handle, string) {
	nsh, h := netnstest.New(t)
	return nsh, h, ""
}

func addVeth(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = name
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: name + "p"}); err != nil {
		t.Fatal(err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestWaitAlreadyUp(t *testing.T) {
	nsh, h, _ := testNetns(t)
	l := addVeth(t, h, "v0")
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	got, err := Wait(ctx, int(nsh), h, "v0")
	if err != nil || got.Attrs().Index != l.Attrs().Index {
		t.Fatalf("Wait = %v, %v", got, err)
	}
}

func TestWaitTimesOut(t *testing.T) {
	nsh, h, _ := testNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Wait(ctx, int(nsh), h, "absent0")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline, got %v", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 300*time.Millisecond {
		t.Fatalf("returned after %s, want ~200ms", d)
	}
}

func TestWaitCancelled(t *testing.T) {
	nsh, h, _ := testNetns(t)
	cause := errors.New("SIGTERM")
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(50*time.Millisecond, func() { cancel(cause) })
	_, err := Wait(ctx, int(nsh), h, "absent0")
	if !errors.Is(err, cause) {
		t.Fatalf("want the cancellation cause, got %v", err)
	}
}

// TestWaitRenameAndUp: the link appears under another name, is renamed to
// the awaited one, then set up — as vpc-eni and host-device do.
func TestWaitRenameAndUp(t *testing.T) {
	nsh, h, _ := testNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	type res struct {
		l   netlink.Link
		err error
	}
	done := make(chan res, 1)
	go func() { l, err := Wait(ctx, int(nsh), h, "eth7"); done <- res{l, err} }()
	// The subscription may or may not be in place yet; either way the
	// state below must be found (by the first look or by an event).
	l := addVeth(t, h, "tmp7")
	if err := h.LinkSetName(l, "eth7"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		t.Fatalf("returned before the link was up: %v %v", r.l, r.err)
	default:
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.l.Attrs().Name != "eth7" {
		t.Fatalf("Wait = %v, %v", r.l, r.err)
	}
}

func TestWaitLinkDeleted(t *testing.T) {
	nsh, h, _ := testNetns(t)
	l := addVeth(t, h, "gone0")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Scenario timing: Wait subscribes and looks within a few ms, so the
	// link is seen (down) before it is deleted 100 ms later.
	time.AfterFunc(100*time.Millisecond, func() { _ = h.LinkDel(l) })
	start := time.Now()
	_, err := Wait(ctx, int(nsh), h, "gone0")
	if !errors.Is(err, ErrGone) {
		t.Fatalf("want ErrGone, got %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("ErrGone only after %s", d)
	}
}

// TestWaitCallsBlockingHookOnlyWhenWaiting: a link already up is returned
// without the "about to block" hook (no signal handler installed on the
// fast path); an absent one runs it before the wait begins.
func TestWaitCallsBlockingHookOnlyWhenWaiting(t *testing.T) {
	nsh, h, _ := testNetns(t)
	l := addVeth(t, h, "v0")
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	calls := 0
	ctx, cancel := context.WithTimeout(blocking.WithHook(context.Background(), func() { calls++ }), 100*time.Millisecond)
	defer cancel()
	if _, err := Wait(ctx, int(nsh), h, "v0"); err != nil || calls != 0 {
		t.Fatalf("link up: err %v, hook calls %d, want nil and 0", err, calls)
	}
	if _, err := Wait(ctx, int(nsh), h, "absent0"); !errors.Is(err, context.DeadlineExceeded) || calls != 1 {
		t.Fatalf("link absent: err %v, hook calls %d, want deadline and 1", err, calls)
	}
}

// TestWaitRenamedThenMovedOut: the link is seen down under the awaited
// name, then renamed and moved to another namespace, as vpc-eni's DEL does
// (ip link set eth0 name ecsxyz; ip link set ecsxyz netns 1): ErrGone at
// once, not at the deadline. The wait is known to be in place once the
// first lookup has tracked the link: the subscription is made before the
// second lookup, and the events below are sent after Wait has started and
// seen the link (it was there, down, before Wait began).
func TestWaitRenamedThenMovedOut(t *testing.T) {
	for _, how := range []string{"moved", "deleted"} {
		t.Run(how, func(t *testing.T) {
			nsh, h, _ := testNetns(t)
			other, _ := netnstest.New(t)
			l := addVeth(t, h, "eth5")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			entered := make(chan struct{})
			ctx = blocking.WithHook(ctx, func() { close(entered) })
			done := make(chan error, 1)
			start := time.Now()
			go func() { _, err := Wait(ctx, int(nsh), h, "eth5"); done <- err }()
			<-entered // looked once (the link, down: tracked), about to subscribe
			if err := h.LinkSetName(l, "ecsxyz"); err != nil {
				t.Fatal(err)
			}
			var err error
			if how == "moved" {
				err = h.LinkSetNsFd(l, int(other))
			} else {
				err = h.LinkDel(l)
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := <-done; !errors.Is(err, ErrGone) {
				t.Fatalf("want ErrGone, got %v after %s", err, time.Since(start))
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("ErrGone only after %s", d)
			}
		})
	}
}

// TestWaitRenamedAwayKeepsWaiting: the link seen under the name is renamed
// and stays in the namespace: not gone; a link that then takes the name
// and comes up ends the wait.
func TestWaitRenamedAwayKeepsWaiting(t *testing.T) {
	nsh, h, _ := testNetns(t)
	l := addVeth(t, h, "eth6")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	entered := make(chan struct{})
	ctx = blocking.WithHook(ctx, func() { close(entered) })
	type res struct {
		l   netlink.Link
		err error
	}
	done := make(chan res, 1)
	go func() { l, err := Wait(ctx, int(nsh), h, "eth6"); done <- res{l, err} }()
	<-entered
	if err := h.LinkSetName(l, "old6"); err != nil {
		t.Fatal(err)
	}
	n := addVeth(t, h, "new6")
	if err := h.LinkSetName(n, "eth6"); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(n); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.l.Attrs().Index != n.Attrs().Index {
		t.Fatalf("Wait = %v, %v; want the new eth6 #%d", r.l, r.err, n.Attrs().Index)
	}
}
