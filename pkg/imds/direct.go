package imds

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"syscall"
	"time"
)

// directClient is the HTTP client the SDK sends IMDS requests through: plain
// HTTP/1.1 to one endpoint over kept-alive connections, each request written
// and its answer read on the calling goroutine. A lookup is a handful of tiny
// requests in a process that lives for a few milliseconds; net/http's
// Transport (a dial goroutine and a read and a write goroutine per
// connection, a hand-off between them per request) cost it ~1 ms more per
// invocation than this, measured (docs/BENCHMARKS.md). Parsing stays
// net/http's (Request.Write, ReadResponse); this holds only the connections.
//
// Every answer is read whole (up to maxBody+1 bytes) before Do returns, so a
// connection goes back to the pool at once and a caller's context bounds the
// whole exchange: when it ends mid-request the connection is closed.
type directClient struct {
	addr   string // host:port
	dialer net.Dialer

	mu   sync.Mutex
	idle []*directConn
}

type directConn struct {
	c  net.Conn
	br *bufio.Reader
}

// maxIdleConns bounds the pool: a lookup asks at most this many keys at once.
const maxIdleConns = 8

// newDirectClient serves an http:// endpoint; nil for any other, which gets
// net/http's client.
func newDirectClient(endpoint string) *directClient {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "http" || u.Hostname() == "" || u.User != nil {
		return nil
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	// No TCP keep-alive probes: a connection lives for one invocation, a
	// few milliseconds; enabling them cost four setsockopt calls per dial.
	return &directClient{addr: net.JoinHostPort(u.Hostname(), port), dialer: net.Dialer{Timeout: dialTimeout, KeepAlive: -1}}
}

// Do sends r and returns its answer with the body read. A kept-alive
// connection the server closed meanwhile is retried once on a fresh one,
// as net/http does; any other failure is the SDK retryer's to judge.
func (d *directClient) Do(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	for {
		dc, reused, err := d.conn(ctx)
		if err != nil {
			return nil, &url.Error{Op: r.Method, URL: r.URL.String(), Err: err}
		}
		resp, err := d.roundTrip(ctx, dc, r)
		if err == nil {
			return resp, nil
		}
		if reused && ctx.Err() == nil && stale(err) && (r.Body == nil || r.Body == http.NoBody) {
			continue // closed while idle; the next is fresh, or also idle
		}
		return nil, &url.Error{Op: r.Method, URL: r.URL.String(), Err: err}
	}
}

// stale: the server had closed the kept-alive connection (its idle timeout)
// before the request reached it.
func stale(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// conn takes an idle connection, or dials one bounded by ctx.
func (d *directClient) conn(ctx context.Context) (dc *directConn, reused bool, err error) {
	d.mu.Lock()
	if n := len(d.idle); n > 0 {
		dc = d.idle[n-1]
		d.idle = d.idle[:n-1]
		d.mu.Unlock()
		return dc, true, nil
	}
	d.mu.Unlock()
	c, err := d.dialer.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, false, err
	}
	return &directConn{c: c, br: bufio.NewReaderSize(c, 4<<10)}, false, nil
}

// expired is a deadline in the past: it fails a blocked read or write now.
var expired = time.Unix(1, 0)

// roundTrip writes r on dc and reads its answer whole, the exchange bounded
// by responseHeaderTimeout (net/http's bounds the headers only; IMDS answers
// are a few hundred bytes) and by ctx. The connection goes back to the pool
// only when the exchange completed cleanly and the server keeps it alive;
// otherwise it is closed.
func (d *directClient) roundTrip(ctx context.Context, dc *directConn, r *http.Request) (*http.Response, error) {
	stop := context.AfterFunc(ctx, func() { _ = dc.c.SetDeadline(expired) })
	_ = dc.c.SetDeadline(time.Now().Add(responseHeaderTimeout))
	resp, body, err := exchange(dc, r)
	if !stop() { // ctx ended during the exchange: its error, not the i/o one
		_ = dc.c.Close()
		return nil, context.Cause(ctx)
	}
	if err != nil || len(body) > maxBody || resp.Close || r.Close {
		_ = dc.c.Close()
	} else {
		_ = dc.c.SetDeadline(time.Time{})
		d.release(dc)
	}
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body)) // over maxBody: the caller says so
	resp.ContentLength = int64(len(body))
	return resp, nil
}

func exchange(dc *directConn, r *http.Request) (*http.Response, []byte, error) {
	if err := r.Write(dc.c); err != nil {
		return nil, nil, err
	}
	resp, err := http.ReadResponse(dc.br, r)
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	resp.Body.Close()
	return resp, body, err
}

func (d *directClient) release(dc *directConn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.idle) < maxIdleConns {
		d.idle = append(d.idle, dc)
		return
	}
	_ = dc.c.Close()
}
