// Package imdsfake is an in-process EC2 instance metadata service (IMDSv2
// only) for tests and the demo: session tokens, 401 without one, the
// network/interfaces/macs tree with listings, 404 for absent keys, and
// injectable faults (latency, hanging, 429/5xx, garbage bodies, late
// propagation of device-number, MACs listed late). It serves HTTP and knows
// nothing of the plugin.
package imdsfake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header names of IMDSv2.
const (
	TokenHeader    = "X-Aws-Ec2-Metadata-Token"
	TokenTTLHeader = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
)

const (
	tokenPath = "/latest/api/token"
	mdPrefix  = "/latest/meta-data/"
	macsDir   = "network/interfaces/macs/"
)

// ENI is one network interface as IMDS describes it. Empty fields are
// absent keys (404), as on a real instance.
type ENI struct {
	MAC          string   `json:"mac"`
	DeviceNumber int      `json:"deviceNumber"`
	NetworkCard  *int     `json:"networkCard,omitempty"` // nil: 404 (single-card types)
	InterfaceID  string   `json:"interfaceId,omitempty"`
	LocalIPv4s   []string `json:"localIpv4s,omitempty"`
	IPv6s        []string `json:"ipv6s,omitempty"`
	IPv4Prefixes []string `json:"ipv4Prefixes,omitempty"`
	IPv6Prefixes []string `json:"ipv6Prefixes,omitempty"`
	SubnetIPv4   string   `json:"subnetIpv4,omitempty"`
	SubnetIPv6   []string `json:"subnetIpv6,omitempty"`
	// PropagateAfter makes device-number read "0" for this many reads
	// first: a freshly attached ENI that IMDS has not caught up with.
	PropagateAfter int `json:"propagateAfter,omitempty"`
	// ListAfter makes IMDS not list this MAC (404 on all its keys, absent
	// from macs/) until its device-number was asked this many times: an
	// attachment IMDS has not caught up with at all.
	ListAfter int `json:"listAfter,omitempty"`
}

// Card returns a pointer for ENI.NetworkCard.
func Card(n int) *int { return &n }

// Config is the JSON form of a fake (the fake-imds command reads it).
type Config struct {
	PrimaryMAC string `json:"primaryMac"`
	ENIs       []ENI  `json:"enis"`
	Latency    string `json:"latency,omitempty"`
}

// Request is one request the fake received.
type Request struct {
	Method string
	Path   string
	Status int
}

type fault struct {
	suffix string
	status int
	left   int
}

// Fake is the metadata service. The zero value is not usable: use New.
type Fake struct {
	mu       sync.Mutex
	primary  string
	enis     map[string]*ENI
	reads    map[string]int // device-number reads per MAC
	unlisted map[string]int // device-number reads while not listed, per MAC
	latency  time.Duration
	hang     bool
	faults   []*fault
	raw      map[string]string
	tokens   map[string]time.Time
	issued   int
	log      []Request
	closed   chan struct{}
	once     sync.Once
}

// New returns a fake whose instance has primaryMAC as its top-level `mac`.
func New(primaryMAC string, enis ...ENI) *Fake {
	f := &Fake{
		primary:  strings.ToLower(primaryMAC),
		enis:     map[string]*ENI{},
		reads:    map[string]int{},
		unlisted: map[string]int{},
		raw:      map[string]string{},
		tokens:   map[string]time.Time{},
		closed:   make(chan struct{}),
	}
	for _, e := range enis {
		f.AddENI(e)
	}
	return f
}

// FromConfig builds a fake from its JSON form.
func FromConfig(data []byte) (*Fake, error) {
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("fake IMDS config: %w", err)
	}
	if c.PrimaryMAC == "" {
		return nil, fmt.Errorf("fake IMDS config: primaryMac is required")
	}
	f := New(c.PrimaryMAC, c.ENIs...)
	if c.Latency != "" {
		d, err := time.ParseDuration(c.Latency)
		if err != nil {
			return nil, fmt.Errorf("fake IMDS config: latency: %w", err)
		}
		f.SetLatency(d)
	}
	return f, nil
}

// AddENI attaches (or replaces) an interface.
func (f *Fake) AddENI(e ENI) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e.MAC = strings.ToLower(e.MAC)
	f.enis[e.MAC] = &e
	f.reads[e.MAC] = 0
	f.unlisted[e.MAC] = 0
}

// SetLatency delays every answer by d (the wait ends early when the client
// goes away).
func (f *Fake) SetLatency(d time.Duration) {
	f.mu.Lock()
	f.latency = d
	f.mu.Unlock()
}

// SetHang makes every request block until the client gives up or the fake
// is closed: an IMDS that accepts connections and never answers.
func (f *Fake) SetHang(on bool) {
	f.mu.Lock()
	f.hang = on
	f.mu.Unlock()
}

// Fail answers the next times requests whose path ends with suffix with
// status (e.g. 429, 500, 503). times < 0 means always.
func (f *Fake) Fail(suffix string, status, times int) {
	f.mu.Lock()
	f.faults = append(f.faults, &fault{suffix: suffix, status: status, left: times})
	f.mu.Unlock()
}

// SetRaw makes requests whose path ends with suffix answer 200 with body,
// whatever the ENI data says (garbage bodies).
func (f *Fake) SetRaw(suffix, body string) {
	f.mu.Lock()
	f.raw[suffix] = body
	f.mu.Unlock()
}

// Requests returns the request log.
func (f *Fake) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

// Count returns how many requests arrived.
func (f *Fake) Count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.log)
}

// TokensIssued counts successful token PUTs.
func (f *Fake) TokensIssued() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issued
}

// ResetLog clears the request log and the token counter.
func (f *Fake) ResetLog() {
	f.mu.Lock()
	f.log = nil
	f.issued = 0
	f.mu.Unlock()
}

// Close releases hanging and delayed requests. Idempotent.
func (f *Fake) Close() { f.once.Do(func() { close(f.closed) }) }

// ServeHTTP implements http.Handler.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	latency, hang := f.latency, f.hang
	f.mu.Unlock()
	if hang {
		select {
		case <-r.Context().Done():
		case <-f.closed:
		}
		f.record(r, 0)
		panic(http.ErrAbortHandler) // drop the connection without an answer
	}
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-r.Context().Done():
			t.Stop()
			f.record(r, 0)
			return
		case <-f.closed:
			t.Stop()
		case <-t.C:
		}
	}
	status, body := f.answer(r, w.Header())
	f.record(r, status)
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func (f *Fake) record(r *http.Request, status int) {
	f.mu.Lock()
	f.log = append(f.log, Request{Method: r.Method, Path: r.URL.Path, Status: status})
	f.mu.Unlock()
}

func (f *Fake) answer(r *http.Request, h http.Header) (int, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	path := r.URL.Path
	for _, ft := range f.faults {
		if ft.left != 0 && strings.HasSuffix(path, ft.suffix) {
			if ft.left > 0 {
				ft.left--
			}
			return ft.status, http.StatusText(ft.status) + "\n"
		}
	}
	if path == tokenPath {
		return f.token(r, h)
	}
	if !strings.HasPrefix(path, mdPrefix) && path != strings.TrimSuffix(mdPrefix, "/") {
		return http.StatusNotFound, notFound
	}
	if r.Method != http.MethodGet {
		return http.StatusMethodNotAllowed, "Method Not Allowed\n"
	}
	if !f.validToken(r.Header.Get(TokenHeader)) {
		return http.StatusUnauthorized, "Unauthorized\n"
	}
	key := strings.TrimPrefix(path, mdPrefix)
	for suffix, body := range f.raw {
		if strings.HasSuffix(path, suffix) {
			return http.StatusOK, body
		}
	}
	if body, ok := f.metadata(key); ok {
		return http.StatusOK, body
	}
	return http.StatusNotFound, notFound
}

const notFound = "Not Found\n"

func (f *Fake) token(r *http.Request, h http.Header) (int, string) {
	if r.Method != http.MethodPut {
		return http.StatusMethodNotAllowed, "Method Not Allowed\n"
	}
	ttl, err := strconv.Atoi(r.Header.Get(TokenTTLHeader))
	if err != nil || ttl < 1 || ttl > 21600 {
		return http.StatusBadRequest, "Bad Request\n"
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	f.tokens[tok] = time.Now().Add(time.Duration(ttl) * time.Second)
	f.issued++
	h.Set(TokenTTLHeader, strconv.Itoa(ttl))
	return http.StatusOK, tok
}

func (f *Fake) validToken(tok string) bool {
	exp, ok := f.tokens[tok]
	return ok && time.Now().Before(exp)
}

func (f *Fake) metadata(key string) (string, bool) {
	switch {
	case key == "mac":
		return f.primary, true
	case key == "" || key == "network/" || key == "network/interfaces/":
		return map[string]string{"": "mac\nnetwork/", "network/": "interfaces/", "network/interfaces/": "macs/"}[key], true
	case key == macsDir:
		var macs []string
		for m, e := range f.enis {
			if f.unlisted[m] >= e.ListAfter {
				macs = append(macs, m+"/")
			}
		}
		sort.Strings(macs)
		return strings.Join(macs, "\n"), true
	case !strings.HasPrefix(key, macsDir):
		return "", false
	}
	rest := strings.TrimPrefix(key, macsDir)
	mac, sub, _ := strings.Cut(rest, "/")
	e, ok := f.enis[strings.ToLower(mac)]
	if !ok {
		return "", false
	}
	if f.unlisted[e.MAC] < e.ListAfter {
		if sub == "device-number" {
			f.unlisted[e.MAC]++
		}
		return "", false
	}
	values := f.values(e, sub == "device-number")
	if sub == "" {
		var keys []string
		for k := range values {
			keys = append(keys, k)
		}
		for suffix := range f.raw { // a key given a raw body exists too
			if k := strings.TrimPrefix(suffix, "/"); k != suffix && !strings.Contains(k, "/") && values[k] == "" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		return strings.Join(keys, "\n"), true
	}
	v, ok := values[sub]
	return v, ok
}

// values lists an ENI's present keys; counting marks a device-number read.
func (f *Fake) values(e *ENI, counting bool) map[string]string {
	dev := e.DeviceNumber
	if counting {
		f.reads[e.MAC]++
		if f.reads[e.MAC] <= e.PropagateAfter {
			dev = 0
		}
	}
	v := map[string]string{
		"mac":           e.MAC,
		"device-number": strconv.Itoa(dev),
	}
	if e.NetworkCard != nil {
		v["network-card"] = strconv.Itoa(*e.NetworkCard)
	}
	set := func(k string, vals []string) {
		if len(vals) > 0 {
			v[k] = strings.Join(vals, "\n")
		}
	}
	if e.InterfaceID != "" {
		v["interface-id"] = e.InterfaceID
	}
	set("local-ipv4s", e.LocalIPv4s)
	set("ipv6s", e.IPv6s)
	set("ipv4-prefix", e.IPv4Prefixes)
	set("ipv6-prefix", e.IPv6Prefixes)
	if e.SubnetIPv4 != "" {
		v["subnet-ipv4-cidr-block"] = e.SubnetIPv4
	}
	set("subnet-ipv6-cidr-blocks", e.SubnetIPv6)
	return v
}

// TB is the part of testing.TB Start needs.
type TB interface {
	Helper()
	Cleanup(func())
}

// Start serves f on 127.0.0.1 (a random port) until the test ends and
// returns its base URL, e.g. http://127.0.0.1:41234.
func Start(t TB, f *Fake) string {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	t.Cleanup(f.Close) // runs first: releases hanging handlers so Close returns
	return srv.URL
}
