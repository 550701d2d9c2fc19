package imds

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// countingServer serves handler and counts the connections it accepted.
func countingServer(t *testing.T, handler http.HandlerFunc) (url string, conns *atomic.Int64) {
	t.Helper()
	conns = new(atomic.Int64)
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL, conns
}

// get sends a GET through d and returns the status and the body.
func get(t *testing.T, d *directClient, ctx context.Context, url string) (status int, body []byte, err error) {
	t.Helper()
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := d.Do(r)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b, nil
}

func TestDirectClientKeepsConnectionsAlive(t *testing.T) {
	url, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
	d := newDirectClient(url)
	for _, p := range []string{"/a", "/b", "/c", "/d"} {
		status, body, err := get(t, d, context.Background(), url+p)
		if err != nil || status != 200 || string(body) != p {
			t.Fatalf("%s: %v %d %q", p, err, status, body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("4 requests one after another used %d connections, want 1", n)
	}
}

// A server that answers "Connection: close" gets a fresh connection per
// request, and none is pooled.
func TestDirectClientHonoursConnectionClose(t *testing.T) {
	url, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "ok")
	})
	d := newDirectClient(url)
	for range 3 {
		if _, body, err := get(t, d, context.Background(), url+"/x"); err != nil || string(body) != "ok" {
			t.Fatalf("%v %q", err, body)
		}
	}
	if n := conns.Load(); n != 3 || len(d.idle) != 0 {
		t.Errorf("%d connections, %d idle; want 3, 0", n, len(d.idle))
	}
}

// A kept-alive connection the server closed while it sat idle (its idle
// timeout) is not an error: the request goes again on a fresh one.
func TestDirectClientRedialsAStaleConnection(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() { // one answer, kept alive by its headers, then closed
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	d := newDirectClient("http://" + l.Addr().String())
	for i := range 3 {
		if _, body, err := get(t, d, context.Background(), "http://"+l.Addr().String()+"/x"); err != nil || string(body) != "ok" {
			t.Fatalf("request %d: %v %q", i, err, body)
		}
	}
	if n := accepted.Load(); n != 3 {
		t.Errorf("%d connections, want 3 (each stale one replaced)", n)
	}
}

// The caller's context bounds the whole exchange: a server that never
// answers costs the context's time, and the connection is not pooled.
func TestDirectClientEndsWithTheContext(t *testing.T) {
	release := make(chan struct{})
	url, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	d := newDirectClient(url)
	ctx, cancel := context.WithTimeoutCause(context.Background(), 50*time.Millisecond, errors.New("budget spent"))
	defer cancel()
	t0 := time.Now()
	_, _, err := get(t, d, ctx, url+"/hang")
	if el := time.Since(t0); el > 500*time.Millisecond {
		t.Errorf("took %v after a 50ms context", el)
	}
	if err == nil || !strings.Contains(err.Error(), "budget spent") {
		t.Errorf("err %v, want the context's cause", err)
	}
	if len(d.idle) != 0 {
		t.Errorf("%d idle connections after a cut exchange", len(d.idle))
	}
}

// An answer over maxBody is cut at maxBody+1 bytes (the caller rejects it
// as too large) and its connection, left mid-body, is closed.
func TestDirectClientOversizeAnswer(t *testing.T) {
	url, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", 3*maxBody))
	})
	d := newDirectClient(url)
	_, body, err := get(t, d, context.Background(), url+"/big")
	if err != nil || len(body) != maxBody+1 {
		t.Fatalf("err %v, %d bytes; want %d", err, len(body), maxBody+1)
	}
	if len(d.idle) != 0 {
		t.Errorf("%d idle connections after an oversize answer", len(d.idle))
	}
}

func TestDirectClientOnlyForPlainHTTP(t *testing.T) {
	for _, tc := range []struct {
		endpoint string
		addr     string
	}{
		{"http://169.254.169.254", "169.254.169.254:80"},
		{"http://[fd00:ec2::254]", "[fd00:ec2::254]:80"},
		{"http://127.0.0.1:1338/", "127.0.0.1:1338"},
		{"https://169.254.169.254", ""},
		{"http://user:pw@169.254.169.254", ""},
		{"::not a url", ""},
	} {
		d := newDirectClient(tc.endpoint)
		switch {
		case tc.addr == "" && d != nil:
			t.Errorf("%s: direct client for %s", tc.endpoint, d.addr)
		case tc.addr != "" && (d == nil || d.addr != tc.addr):
			t.Errorf("%s: %+v, want address %s", tc.endpoint, d, tc.addr)
		}
	}
	if _, ok := defaultHTTPClient("https://example.invalid").(*http.Client); !ok {
		t.Error("https endpoint does not get net/http's client")
	}
}

// A connection lives for one invocation: no keep-alive probes are armed.
func TestDirectClientDialsWithoutKeepAliveProbes(t *testing.T) {
	url, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {})
	d := newDirectClient(url)
	dc, _, err := d.conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer dc.c.Close()
	raw, err := dc.c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var on int
	var serr error
	if err := raw.Control(func(fd uintptr) { on, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	if on != 0 {
		t.Errorf("SO_KEEPALIVE = %d, want 0", on)
	}
}
