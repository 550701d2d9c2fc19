package plugin

import (
	"bytes"
	"context"
	"net"
	"sync"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/blocking"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// IMDS lookups run alongside the namespace work (open, link wait, address
// reads): each starts as soon as its interface's MAC is known — from
// prevResult before any kernel work in chained mode (the ECS front
// synthesises one too), from the link once found in standalone mode — and is
// joined before anything is applied. None outlives the verb: stop cancels
// them and waits. Each is bounded by imds.timeout and the verb's context.
type lookups struct {
	sess   MetadataSession
	cfg    *config.Config
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	items  []*lookup // per selected interface; nil until its MAC is known
	// consequence ends a failed lookup's message: what it meant for the
	// verb (ADD: nothing was installed).
	consequence string
}

// lookup is one interface's lookup in flight.
type lookup struct {
	mac    net.HardwareAddr
	cancel context.CancelFunc
	done   chan struct{} // closed when md and err are set
	md     *ENIMetadata
	err    error

	decided chan struct{} // closed once await is known (the link's kind)
	once    sync.Once
	await   bool
}

// startLookups starts, in the invocation's session, the lookups whose MAC
// prevResult names; nil when the invocation does not use IMDS (sess nil).
func startLookups(ctx context.Context, sess MetadataSession, cfg *config.Config, sel []selected, consequence string) *lookups {
	if sess == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &lookups{sess: sess, cfg: cfg, ctx: ctx, cancel: cancel, items: make([]*lookup, len(sel)), consequence: consequence}
	prime := false
	for i, s := range sel {
		if mac := prevResultMAC(cfg, s); mac != nil {
			l.items[i] = l.start(mac)
		} else {
			prime = true
		}
	}
	// A MAC known only from the link (standalone mode): fetch the session
	// token meanwhile, so the lookup is one round trip once it is.
	if prime {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			sess.Prime(ctx)
		}()
	}
	return l
}

// prevResultMAC is the MAC prevResult gives the interface, or nil.
func prevResultMAC(cfg *config.Config, s selected) net.HardwareAddr {
	if cfg.PrevResult == nil || s.ifIndex < 0 || s.ifIndex >= len(cfg.PrevResult.Interfaces) {
		return nil
	}
	mac, err := net.ParseMAC(cfg.PrevResult.Interfaces[s.ifIndex].Mac)
	if err != nil || len(mac) != 6 {
		return nil
	}
	return mac
}

func (l *lookups) start(mac net.HardwareAddr) *lookup {
	ctx, cancel := context.WithCancel(l.ctx)
	it := &lookup{mac: mac, cancel: cancel, done: make(chan struct{}), decided: make(chan struct{})}
	if v := l.cfg.IMDS.AwaitUnlisted; v != nil {
		it.decide(*v)
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer close(it.done)
		it.md, it.err = l.sess.Lookup(ctx, mac, it.awaitListing)
	}()
	return it
}

func (it *lookup) decide(await bool) {
	it.once.Do(func() {
		it.await = await
		close(it.decided)
	})
}

// awaitListing is the lookup's imds.AwaitListing: on a 404 for the MAC it
// waits until the link is seen (its kind decides), bounded by ctx.
func (it *lookup) awaitListing(ctx context.Context) bool {
	select {
	case <-it.decided:
		return it.await
	case <-ctx.Done():
		return false
	}
}

// linkFound ties selected interface i to its link: it starts the lookup
// when prevResult gave no MAC (standalone) or another one than the link's,
// and decides whether a MAC IMDS does not list is waited for.
func (l *lookups) linkFound(i int, link plan.Link) {
	if l == nil {
		return
	}
	mac := link.HardwareAddr()
	it := l.items[i]
	if it == nil || !bytes.Equal(it.mac, mac) {
		if it != nil {
			it.cancel() // the link's MAC is the truth
		}
		it = l.start(mac)
		l.items[i] = it
	}
	it.decide(awaitsListing(l.cfg, link))
}

// result waits for interface i's lookup (started by linkFound at the
// latest); nil, nil when IMDS is not used.
func (l *lookups) result(i int) (*ENIMetadata, error) {
	if l == nil {
		return nil, nil
	}
	it := l.items[i]
	select {
	case <-it.done:
	default:
		// About to wait for IMDS: let SIGTERM end it. Installing the
		// handler (~1 ms on a busy host, see package blocking) overlaps
		// the requests already in flight.
		blocking.Ahead(l.ctx)
		<-it.done
	}
	if it.err != nil {
		return nil, withConsequence(it.err, l.consequence)
	}
	return it.md, nil
}

// usage records what the invocation asked of IMDS, for its log line.
func (l *lookups) usage(out *Outcome) {
	if l == nil {
		return
	}
	out.IMDSRequests, out.IMDSRoundTrips = l.sess.Usage()
}

// stop ends every lookup and waits for it.
func (l *lookups) stop() {
	if l == nil {
		return
	}
	l.cancel()
	l.wg.Wait()
}

// awaitsListing decides whether a MAC IMDS does not list (404) is waited
// for, within imds.timeout, as a fresh attachment IMDS has not caught up
// with: imds.awaitUnlisted when configured, else only for a physical NIC (a
// link without a kernel link kind: ena, ixgbevf, xen-netfront — what an ENI
// is). A veth, vlan (a branch ENI), bridge, macvlan... is never an ENI IMDS
// will list, and waiting would cost the whole budget on every ADD.
func awaitsListing(cfg *config.Config, link plan.Link) bool {
	if v := cfg.IMDS.AwaitUnlisted; v != nil {
		return *v
	}
	return link.Kind == "device"
}
