package imds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The IMDSv2 session protocol: PUT a token request, send the token with
// every GET. A plain net/http client rather than aws-sdk-go-v2's
// feature/ec2/imds: its per-request middleware stack cost about as much CPU
// as the requests themselves, and ADD pays it on every task start.
const (
	tokenPath      = "/latest/api/token"
	metadataPath   = "/latest/meta-data/"
	tokenHeader    = "X-Aws-Ec2-Metadata-Token"
	tokenTTLHeader = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
	tokenTTL       = "300" // s; a client lives for one invocation
)

// HTTPClient sends one request; *http.Client is one.
type HTTPClient interface {
	Do(*http.Request) (*http.Response, error)
}

// Options configures a Client.
type Options struct {
	// Endpoint is the IMDS base URL; DefaultEndpoint when empty. The SDK's
	// AWS_EC2_METADATA_* environment variables are not consulted: the
	// plugin's configuration is the only source.
	Endpoint string
	// MaxAttempts per request (first try included); 3 when zero.
	MaxAttempts int
	// PropagationPoll is the first interval between device-number polls
	// while an attachment propagates (doubling up to 5x); 50 ms when zero.
	PropagationPoll time.Duration
	// HTTPClient replaces the default transport (tests).
	HTTPClient HTTPClient
}

// Client looks up ENIs. Safe for concurrent use.
type Client struct {
	hc       HTTPClient
	endpoint string
	attempts int
	poll     time.Duration
	requests atomic.Int64
	rounds   atomic.Int64

	tokMu      sync.Mutex
	token      string
	tokErr     error         // a failed fetch is not repeated: attempts do not multiply
	tokenReady chan struct{} // closed once the token is in

	mu      sync.Mutex
	primary net.HardwareAddr // cached top-level `mac`
}

// New builds a client. It makes no request.
func New(o Options) *Client {
	c := &Client{hc: o.HTTPClient, endpoint: strings.TrimRight(o.Endpoint, "/"), attempts: o.MaxAttempts, poll: o.PropagationPoll, tokenReady: make(chan struct{})}
	if c.endpoint == "" {
		c.endpoint = DefaultEndpoint
	}
	if c.poll <= 0 {
		c.poll = 50 * time.Millisecond
	}
	if c.attempts <= 0 {
		c.attempts = 3
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: &http.Transport{
			Proxy:                 nil, // IMDS is link-local: never through a proxy
			DialContext:           (&net.Dialer{Timeout: dialTimeout}).DialContext,
			ResponseHeaderTimeout: responseHeaderTimeout,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       10 * time.Second,
		}}
	}
	return c
}

// Endpoint is the base URL requests go to.
func (c *Client) Endpoint() string { return c.endpoint }

// Requests counts HTTP requests sent so far (token, metadata, retries).
func (c *Client) Requests() int { return int(c.requests.Load()) }

// RoundTrips counts the sequential steps of requests so far: the token,
// then each batch asked at once, each poll.
func (c *Client) RoundTrips() int { return int(c.rounds.Load()) }

// wave counts one step of requests (a token fetch counts as its own).
func (c *Client) wave() { c.rounds.Add(1) }

// Ping fetches a session token: the cheapest proof that IMDSv2 answers.
func (c *Client) Ping(ctx context.Context) error {
	if _, err := c.sessionToken(ctx); err != nil {
		return keyError(ctx, strings.TrimPrefix(tokenPath, "/latest/"), err)
	}
	return nil
}

// sessionToken returns the session's token, fetching it on first use.
func (c *Client) sessionToken(ctx context.Context) (string, error) {
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	switch {
	case c.token != "":
		return c.token, nil
	case c.tokErr != nil:
		return "", c.tokErr
	}
	c.wave()
	body, status, err := c.send(ctx, http.MethodPut, tokenPath, func(r *http.Request) { r.Header.Set(tokenTTLHeader, tokenTTL) })
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("HTTP %d: %s", status, http.StatusText(status))
	}
	if tok := strings.TrimSpace(body); err == nil && tok == "" {
		err = fmt.Errorf("%w: empty token", ErrMalformed)
	}
	if err != nil {
		err = fmt.Errorf("failed to get API token, %w", err)
		if ctx.Err() == nil {
			c.tokErr = err // a caller's ended context is not the session's failure
		}
		return "", err
	}
	c.token = strings.TrimSpace(body)
	close(c.tokenReady)
	return c.token, nil
}

// dropToken forgets a token IMDS refused (401), so the next use fetches one.
func (c *Client) dropToken(tok string) {
	c.tokMu.Lock()
	if c.token == tok {
		c.token = ""
	}
	c.tokMu.Unlock()
}

// get fetches one key below /latest/meta-data/; found is false on 404.
func (c *Client) get(ctx context.Context, key string) (body string, found bool, err error) {
	for refreshed := false; ; refreshed = true {
		tok, err := c.sessionToken(ctx)
		if err != nil {
			return "", false, keyError(ctx, key, err)
		}
		body, status, err := c.send(ctx, http.MethodGet, metadataPath+key, func(r *http.Request) { r.Header.Set(tokenHeader, tok) })
		switch {
		case err != nil:
			return "", false, keyError(ctx, key, err)
		case status == http.StatusOK:
			return body, true, nil
		case status == http.StatusNotFound:
			return "", false, nil
		case status == http.StatusUnauthorized && !refreshed:
			c.dropToken(tok) // expired or revoked: once more with a fresh one
			continue
		}
		return "", false, &Error{Key: key, Status: status, Err: errors.New(http.StatusText(status))}
	}
}

// errTooLarge: an answer over maxBody, which a cut would turn into a
// shorter, wrong one (the last line of a list truncated into another valid
// address).
var errTooLarge = fmt.Errorf("%w: answer larger than %d bytes", ErrMalformed, maxBody)

// keyError wraps a failed request; when the context ended it is the cause.
func keyError(ctx context.Context, key string, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(err, ErrMalformed) {
		return &Error{Key: key, Err: fmt.Errorf("%w (last error: %v)", cause, err)} //nolint:errorlint // the budget is the cause; the request error is context only
	}
	return &Error{Key: key, Err: err}
}

// send makes a request, retrying 429, 5xx and transport errors up to the
// attempt limit; it returns the last answer's body and status.
func (c *Client) send(ctx context.Context, method, path string, header func(*http.Request)) (body string, status int, err error) {
	for attempt := 1; ; attempt++ {
		body, status, err = c.once(ctx, method, path, header)
		if !retryable(status, err) || attempt >= c.attempts || ctx.Err() != nil {
			return body, status, err
		}
		t := time.NewTimer(backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return body, status, err
		case <-t.C:
		}
	}
}

// once is one attempt.
func (c *Client) once(ctx context.Context, method, path string, header func(*http.Request)) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint+path, nil)
	if err != nil {
		return "", 0, err
	}
	header(req)
	c.requests.Add(1)
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	switch {
	case err != nil:
		return "", 0, err // cut off mid-answer: a transport error
	case len(b) > maxBody:
		return "", resp.StatusCode, errTooLarge
	}
	return string(b), resp.StatusCode, nil
}

// retryable: throttling (429), server errors (5xx) and transport errors;
// nothing else, and nothing once the context ended.
func retryable(status int, err error) bool {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, ErrMalformed):
		return false
	case err != nil:
		return true
	}
	return status == http.StatusTooManyRequests || status >= 500
}

// backoff: 50 ms, 100 ms, 200 ms ... capped at 400 ms, with jitter.
func backoff(attempt int) time.Duration {
	d := 50 * time.Millisecond << min(max(attempt-1, 0), 3)
	return d/2 + rand.N(d/2+1)
}
