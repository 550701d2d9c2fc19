package plugin

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/ec2-policy-routes/ec2-policy-routes/internal/imdsfake"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/imds"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/state"
)

const (
	mdPrimary = "0a:00:00:00:00:01"
	mdENI1    = "0a:00:00:00:01:01"
	mdENI2    = "0a:00:00:00:01:02"
)

func mdFake() *imdsfake.Fake {
	return imdsfake.New(mdPrimary,
		imdsfake.ENI{
			MAC: mdENI1, DeviceNumber: 1, NetworkCard: imdsfake.Card(0), InterfaceID: "eni-0aaa",
			LocalIPv4s: []string{"10.0.1.25", "10.0.1.26"}, IPv4Prefixes: []string{"10.0.1.48/28"},
			SubnetIPv4: "10.0.1.0/24",
		},
		imdsfake.ENI{
			MAC: mdENI2, DeviceNumber: 2, NetworkCard: imdsfake.Card(1), InterfaceID: "eni-0bbb",
			LocalIPv4s: []string{"10.0.2.9"}, IPv6s: []string{"2001:db8:2::9"},
			SubnetIPv4: "10.0.2.0/24", SubnetIPv6: []string{"2001:db8:2::/64"},
		},
	)
}

func mdConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(`{"cniVersion":"1.0.0","name":"n","type":"ec2-policy-routes"` + extra + `}`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func hw(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func wantCode(t *testing.T, err error, code uint, substr ...string) *types.Error {
	t.Helper()
	var te *types.Error
	if !errors.As(err, &te) || te.Code != code {
		t.Fatalf("want *types.Error code %d, got %T %v", code, err, err)
	}
	for _, s := range substr {
		if !strings.Contains(te.Msg, s) {
			t.Errorf("message %q lacks %q", te.Msg, s)
		}
	}
	return te
}

func TestIMDSEnabledByDefault(t *testing.T) {
	if cfg := mdConfig(t, ""); !cfg.IMDS.Enabled || cfg.IMDS.Timeout != 3*time.Second || cfg.IMDS.Endpoint != "" {
		t.Fatalf("defaults: %+v", cfg.IMDS)
	}
	if cfg := mdConfig(t, `,"imds":{"timeout":"1s"}`); !cfg.IMDS.Enabled {
		t.Fatal("imds without enabled must be enabled")
	}
	if cfg := mdConfig(t, `,"imds":{"enabled":false}`); cfg.IMDS.Enabled {
		t.Fatal("enabled:false ignored")
	}
}

func TestMetadataNumberingAndFacts(t *testing.T) {
	url := imdsfake.Start(t, mdFake())
	cfg := mdConfig(t, `,"imds":{"endpoint":"`+url+`"}`)
	m := NewIMDSMetadata().Open(cfg) // one invocation's session
	md1, err := m.Lookup(context.Background(), hw(t, mdENI1), nil)
	if err != nil {
		t.Fatal(err)
	}
	md2, err := m.Lookup(context.Background(), hw(t, mdENI2), nil)
	if err != nil {
		t.Fatal(err)
	}
	if md1.Table != 10001 || md2.Table != 10102 {
		t.Errorf("tables %d %d, want 10001 10102 (10000 + 100*card + device)", md1.Table, md2.Table)
	}
	wantSrc := []netip.Prefix{netip.MustParsePrefix("10.0.1.25/32"), netip.MustParsePrefix("10.0.1.26/32"), netip.MustParsePrefix("10.0.1.48/28")}
	if !slices.Equal(md1.Sources, wantSrc) {
		t.Errorf("sources %v", md1.Sources)
	}
	if !slices.Equal(md1.Subnets, []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24")}) {
		t.Errorf("subnets %v", md1.Subnets)
	}
	// Standalone: the VPC router is the subnet's first host.
	if !slices.Equal(md1.Gateways, []netip.Addr{netip.MustParseAddr("10.0.1.1")}) {
		t.Errorf("gateways %v", md1.Gateways)
	}
	if !slices.Equal(md1.AltNames, []string{"eni-0aaa", "device-number-1.0"}) || !slices.Equal(md2.AltNames, []string{"eni-0bbb", "device-number-2.1"}) {
		t.Errorf("altnames %v %v", md1.AltNames, md2.AltNames)
	}
	if len(md2.Sources) != 2 || len(md2.Subnets) != 2 {
		t.Errorf("dual stack facts %+v", md2)
	}
	// Two lookups, one token: 1 + (5 + card, prefix) + (5 + card, ipv6s,
	// IPv6 subnets): the first round, then the optional keys each listing names.
	if n, _ := m.Usage(); n != 16 {
		t.Errorf("%d requests for two ENIs, want 16", n)
	}
}

func TestMetadataTableBaseAndSingleCard(t *testing.T) {
	f := imdsfake.New(mdPrimary, imdsfake.ENI{MAC: mdENI1, DeviceNumber: 3, LocalIPv4s: []string{"10.0.1.25"}, SubnetIPv4: "10.0.1.0/24"})
	url := imdsfake.Start(t, f)
	cfg := mdConfig(t, `,"tableBase":20000,"imds":{"endpoint":"`+url+`"}`)
	md, err := NewIMDSMetadata().Lookup(context.Background(), cfg, hw(t, mdENI1), nil)
	if err != nil {
		t.Fatal(err)
	}
	if md.Table != 20003 { // card 0: tableBase + device-number
		t.Errorf("table %d", md.Table)
	}
	// network-card 404: no ".C" suffix, as ec2-net-utils on single-card types.
	if !slices.Equal(md.AltNames, []string{"device-number-3"}) {
		t.Errorf("altnames %v", md.AltNames)
	}
}

func TestMetadataNoGatewayInChainedMode(t *testing.T) {
	url := imdsfake.Start(t, mdFake())
	cfg := mdConfig(t, `,"imds":{"endpoint":"`+url+`"},"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth1","sandbox":"/x"}],"ips":[{"address":"10.0.1.25/24","interface":0}]}`)
	md, err := NewIMDSMetadata().Lookup(context.Background(), cfg, hw(t, mdENI1), nil)
	if err != nil {
		t.Fatal(err)
	}
	if md.Gateways != nil {
		t.Errorf("chained mode derived gateways %v", md.Gateways)
	}
}

func TestMetadataReservedTable(t *testing.T) {
	f := imdsfake.New(mdPrimary, imdsfake.ENI{MAC: mdENI1, DeviceNumber: 4, LocalIPv4s: []string{"10.0.1.25"}})
	url := imdsfake.Start(t, f)
	cfg := mdConfig(t, `,"tableBase":250,"imds":{"endpoint":"`+url+`"}`)
	_, err := NewIMDSMetadata().Lookup(context.Background(), cfg, hw(t, mdENI1), nil)
	wantCode(t, err, types.ErrInvalidNetworkConfig, "reserved")
}

func TestMetadataErrorCodes(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(*imdsfake.Fake)
		mac    string
		code   uint
		substr string
	}{
		{"unknown MAC", nil, "0a:00:00:00:09:09", types.ErrInvalidNetworkConfig, "lists no network interface"},
		{"not propagated", func(f *imdsfake.Fake) {
			f.AddENI(imdsfake.ENI{MAC: mdENI1, DeviceNumber: 1, PropagateAfter: 1 << 30})
		}, mdENI1, types.ErrTryAgainLater, "not propagated"},
		{"garbage", func(f *imdsfake.Fake) { f.SetRaw("/local-ipv4s", "<html>oops</html>") }, mdENI1, types.ErrIOFailure, "malformed"},
		{"forbidden", func(f *imdsfake.Fake) { f.Fail("/local-ipv4s", 403, -1) }, mdENI1, types.ErrIOFailure, "HTTP 403"},
		{"server errors", func(f *imdsfake.Fake) { f.Fail("/local-ipv4s", 503, -1) }, mdENI1, types.ErrTryAgainLater, "HTTP 503"},
		{"throttled", func(f *imdsfake.Fake) { f.Fail("/device-number", 429, -1) }, mdENI1, types.ErrTryAgainLater, "HTTP 429"},
		{"hanging", func(f *imdsfake.Fake) { f.SetHang(true) }, mdENI1, types.ErrTryAgainLater, "did not answer within imds.timeout 300ms"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := mdFake()
			if tc.setup != nil {
				tc.setup(f)
			}
			url := imdsfake.Start(t, f)
			cfg := mdConfig(t, `,"imds":{"endpoint":"`+url+`","timeout":"300ms"}`)
			t0 := time.Now()
			_, err := NewIMDSMetadata().Lookup(context.Background(), cfg, hw(t, tc.mac), nil)
			if el := time.Since(t0); el > 300*time.Millisecond+100*time.Millisecond {
				t.Errorf("took %v with imds.timeout 300ms", el)
			}
			wantCode(t, err, tc.code, tc.substr, url)
		})
	}
}

// The budget is per invocation: a second lookup does not get a fresh one.
func TestMetadataBudgetIsPerInvocation(t *testing.T) {
	f := mdFake()
	url := imdsfake.Start(t, f)
	cfg := mdConfig(t, `,"imds":{"endpoint":"`+url+`","timeout":"300ms"}`)
	m := NewIMDSMetadata().Open(cfg)
	if _, err := m.Lookup(context.Background(), hw(t, mdENI1), nil); err != nil {
		t.Fatal(err)
	}
	f.SetHang(true)
	t0 := time.Now()
	_, err := m.Lookup(context.Background(), hw(t, mdENI2), nil)
	wantCode(t, err, types.ErrTryAgainLater)
	if el := time.Since(t0); el > 400*time.Millisecond {
		t.Errorf("second lookup took %v: budget not shared", el)
	}
}

func TestStatusIMDS(t *testing.T) {
	f := mdFake()
	url := imdsfake.Start(t, f)
	p := &Plugin{Metadata: NewIMDSMetadata()}
	status := func(conf string) error {
		return p.Status(&skel.CmdArgs{StdinData: []byte(`{"cniVersion":"1.1.0","name":"n","type":"ec2-policy-routes"` + conf + `}`)})
	}
	if err := status(`,"imds":{"endpoint":"` + url + `"}`); err != nil {
		t.Fatalf("reachable IMDS: %v", err)
	}

	// Unreachable: a port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	p = &Plugin{Metadata: NewIMDSMetadata()}
	wantCode(t, status(`,"imds":{"endpoint":"`+dead+`","timeout":"500ms"}`), types.ErrPluginNotAvailable, dead)

	// Disabled: ready without asking.
	f.ResetLog()
	p = &Plugin{Metadata: NewIMDSMetadata()}
	if err := status(`,"imds":{"enabled":false,"endpoint":"` + url + `"}`); err != nil || f.Count() != 0 {
		t.Fatalf("disabled: err %v, %d requests", err, f.Count())
	}
}

// DEL and GC never call IMDS, and neither does a CHECK whose namespace is
// gone: they fail fast or succeed without it. (CHECK of a live namespace
// does: TestIMDSCheck.)
func TestDelCheckGCNeverCallIMDS(t *testing.T) {
	f := mdFake()
	url := imdsfake.Start(t, f)
	p := &Plugin{Metadata: NewIMDSMetadata(), StateDir: t.TempDir()}
	stdin := []byte(`{"cniVersion":"1.1.0","name":"n","type":"ec2-policy-routes","imds":{"endpoint":"` + url + `"}}`)
	missing := t.TempDir() + "/gone"
	_ = p.Del(&skel.CmdArgs{ContainerID: "c", Netns: missing, IfName: "eth0", StdinData: stdin})
	_ = p.Del(&skel.CmdArgs{ContainerID: "c", IfName: "eth0", StdinData: stdin})
	_ = p.Check(&skel.CmdArgs{ContainerID: "c", Netns: missing, IfName: "eth0", StdinData: stdin})
	_ = p.GC(&skel.CmdArgs{StdinData: stdin})
	if f.Count() != 0 {
		t.Fatalf("IMDS got %d requests: %v", f.Count(), f.Requests())
	}
}

func TestGCDropsOnlyStaleRecordsOfThisNetwork(t *testing.T) {
	dir := t.TempDir()
	st := state.Store{Dir: dir}
	rec := func(network, ctr, ifn string) {
		t.Helper()
		err := st.Save(&state.Attachment{Network: network, ContainerID: ctr, IfName: ifn,
			Links: []state.Link{{IfName: ifn, Index: 2, MAC: mdENI1, AltNames: []string{"eni-0aaa"}}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	rec("n", "live", "eth0")
	rec("n", "legacy", "eth0")
	rec("n", "dead", "eth0")
	rec("other", "dead", "eth1")
	p := &Plugin{StateDir: dir}
	gc := func(extra string) {
		t.Helper()
		if err := p.GC(&skel.CmdArgs{StdinData: []byte(`{"cniVersion":"1.1.0","name":"n","type":"ec2-policy-routes"` + extra + `}`)}); err != nil {
			t.Fatal(err)
		}
	}
	has := func(ctr, ifn string) bool {
		a, err := st.Load(ctr, ifn)
		return err == nil && a != nil
	}
	gc("") // cnitool gc: no list, nothing known to be stale
	if !has("dead", "eth0") {
		t.Fatal("GC without attachment lists dropped a record")
	}
	gc(`,"cni.dev/valid-attachments":[{"containerID":"live","ifname":"eth0"}],"cni.dev/attachments":[{"containerID":"legacy","ifname":"eth0"}]`)
	if !has("live", "eth0") || !has("legacy", "eth0") || has("dead", "eth0") || !has("dead", "eth1") {
		t.Fatalf("after GC: live %v legacy %v dead %v other network %v",
			has("live", "eth0"), has("legacy", "eth0"), has("dead", "eth0"), has("dead", "eth1"))
	}
	gc(`,"cni.dev/valid-attachments":[]`)
	if has("live", "eth0") || has("legacy", "eth0") || !has("dead", "eth1") {
		t.Fatal("empty valid list must drop every record of this network, and only those")
	}
}

func TestDelWithoutNetnsDropsRecord(t *testing.T) {
	dir := t.TempDir()
	st := state.Store{Dir: dir}
	if err := st.Save(&state.Attachment{Network: "n", ContainerID: "c", IfName: "eth0",
		Links: []state.Link{{IfName: "eth0", Index: 2, MAC: mdENI1, AltNames: []string{"eni-0aaa"}}}}); err != nil {
		t.Fatal(err)
	}
	p := &Plugin{StateDir: dir}
	stdin := []byte(`{"cniVersion":"1.1.0","name":"n","type":"ec2-policy-routes"}`)
	if err := p.Del(&skel.CmdArgs{ContainerID: "c", Netns: dir + "/gone", IfName: "eth0", StdinData: stdin}); err != nil {
		t.Fatal(err)
	}
	if a, _ := st.Load("c", "eth0"); a != nil {
		t.Fatal("record survived DEL")
	}
}

// A new invocation (a new session, opened by its verb) gets a new budget and token, also
// when the same Plugin value is reused in-process.
func TestMetadataSessionPerInvocation(t *testing.T) {
	f := mdFake()
	url := imdsfake.Start(t, f)
	m := NewIMDSMetadata()
	var last *IMDSSession
	for i := 0; i < 2; i++ {
		cfg := mdConfig(t, `,"imds":{"endpoint":"`+url+`"}`)
		last = m.Open(cfg).(*IMDSSession)
		if _, err := last.Lookup(context.Background(), hw(t, mdENI1), nil); err != nil {
			t.Fatalf("invocation %d: %v", i, err)
		}
	}
	if f.TokensIssued() != 2 || time.Until(last.deadline) < 2*time.Second {
		t.Errorf("%d tokens for two invocations; budget left %v", f.TokensIssued(), time.Until(last.deadline))
	}
}

// Package imds must stay cheap to import: nothing at init, the client is
// built on first use.
func TestIMDSMetadataIsLazy(t *testing.T) {
	cfg := mdConfig(t, `,"imds":{"endpoint":"http://192.0.2.1:1"}`)
	s := NewIMDSMetadata().Open(cfg).(*IMDSSession)
	if n, _ := s.Usage(); s.client != nil || n != 0 {
		t.Fatal("client built before first use")
	}
	var _ MetadataSource = NewIMDSMetadata()
	_ = imds.DefaultEndpoint
}

// countingSource records the sessions verbs open.
type countingSource struct{ opened []*countingSession }

type countingSession struct {
	cfg   *config.Config
	pings int
}

func (c *countingSource) Open(cfg *config.Config) MetadataSession {
	s := &countingSession{cfg: cfg}
	c.opened = append(c.opened, s)
	return s
}

func (s *countingSession) Lookup(context.Context, net.HardwareAddr, imds.AwaitListing) (*ENIMetadata, error) {
	return nil, errors.New("not used")
}
func (s *countingSession) Prime(context.Context)      {}
func (s *countingSession) Ping(context.Context) error { s.pings++; return nil }
func (s *countingSession) Usage() (int, int)          { return 0, 0 }

// Each invocation opens its own session, passed down explicitly; with IMDS
// disabled none is opened at all.
func TestEachInvocationOpensItsSession(t *testing.T) {
	src := &countingSource{}
	p := &Plugin{Metadata: src}
	stdin := func(conf string) *skel.CmdArgs {
		return &skel.CmdArgs{StdinData: []byte(`{"cniVersion":"1.1.0","name":"n","type":"ec2-policy-routes"` + conf + `}`)}
	}
	for range 2 {
		if err := p.Status(stdin("")); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Status(stdin(`,"imds":{"enabled":false}`)); err != nil {
		t.Fatal(err)
	}
	if len(src.opened) != 2 || src.opened[0] == src.opened[1] || src.opened[0].cfg == src.opened[1].cfg {
		t.Fatalf("opened %d sessions, want one per IMDS-enabled invocation", len(src.opened))
	}
	for i, s := range src.opened {
		if s.pings != 1 {
			t.Errorf("session %d pinged %d times, want 1", i, s.pings)
		}
	}
}
