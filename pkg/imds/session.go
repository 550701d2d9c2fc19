package imds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	sdkimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// The IMDSv2 session goes through aws-sdk-go-v2's feature/ec2/imds client:
// its token provider fetches the session token (under its own mutex) and
// signs every GET with it. This file adds what a lookup needs around it:
// a gate so that until the token is in only one request goes (a failed
// fetch is then not repeated by the others), and an HTTP client wrapper
// that counts requests and tells the gate the moment the token arrived.
const (
	tokenPath      = "/latest/api/token" // the SDK's
	tokenTTLHeader = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
)

// HTTPClient sends one request; *http.Client is one.
type HTTPClient = sdkimds.HTTPClient

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
	sdk      *sdkimds.Client
	endpoint string
	poll     time.Duration
	requests atomic.Int64
	rounds   atomic.Int64

	tokenReady chan struct{} // closed by the transport once a token is in
	tokenTurn  chan struct{} // held by the one request that may fetch it
	tokErr     error         // the failed fetch (held under tokenTurn)

	mu      sync.Mutex
	primary net.HardwareAddr // cached top-level `mac`
}

// New builds a client. It makes no request.
func New(o Options) *Client {
	c := &Client{endpoint: strings.TrimRight(o.Endpoint, "/"), poll: o.PropagationPoll,
		tokenReady: make(chan struct{}), tokenTurn: make(chan struct{}, 1)}
	if c.endpoint == "" {
		c.endpoint = DefaultEndpoint
	}
	if c.poll <= 0 {
		c.poll = 50 * time.Millisecond
	}
	attempts := o.MaxAttempts
	if attempts <= 0 {
		attempts = 3
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient(c.endpoint)
	}
	c.sdk = sdkimds.New(sdkimds.Options{
		Endpoint:          c.endpoint,            // set, so AWS_EC2_METADATA_SERVICE_ENDPOINT is not read
		ClientEnableState: sdkimds.ClientEnabled, // nor AWS_EC2_METADATA_DISABLED
		EnableFallback:    aws.FalseTernary,      // IMDSv2 only
		// Our backoff, not the SDK's up-to-1 s one: the budget is small.
		DisableDefaultMaxBackoff: true,
		HTTPClient:               transport{hc, c},
		Retryer: retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = attempts
			so.Retryables = []retry.IsErrorRetryable{retry.IsErrorRetryableFunc(retryable)}
			so.RateLimiter = ratelimit.None
			so.Backoff = retry.BackoffDelayerFunc(backoff)
		}),
	})
	return c
}

// defaultHTTPClient: directClient for an http:// endpoint (every IMDS one),
// net/http's client, never through a proxy, for anything else.
func defaultHTTPClient(endpoint string) HTTPClient {
	if d := newDirectClient(endpoint); d != nil {
		return d
	}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 nil, // IMDS is link-local: never through a proxy
		DialContext:           (&net.Dialer{Timeout: dialTimeout}).DialContext,
		ResponseHeaderTimeout: responseHeaderTimeout,
		MaxIdleConnsPerHost:   maxIdleConns,
		IdleConnTimeout:       10 * time.Second,
	}}
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

func (c *Client) tokenIn() bool {
	select {
	case <-c.tokenReady:
		return true
	default:
		return false
	}
}

// Ping fetches a session token: the cheapest proof that IMDSv2 answers.
// The SDK exports no token call, so it sends a GET the transport stops
// once the token provider has signed it (see tokenOnly).
func (c *Client) Ping(ctx context.Context) error {
	_, _, err := c.get(context.WithValue(ctx, tokenOnly{}, true), KeyPrimaryMAC)
	if errors.Is(err, errTokenOnly) {
		return nil
	}
	if err != nil {
		return keyError(ctx, strings.TrimPrefix(tokenPath, "/latest/"), errors.Unwrap(err))
	}
	return nil
}

// get fetches one key below /latest/meta-data/; found is false on 404.
// Until the session has its token, requests go one at a time: the first
// fetches it, and if that failed the rest fail with its error at once.
func (c *Client) get(ctx context.Context, key string) (body string, found bool, err error) {
	if c.tokenIn() {
		return c.getMetadata(ctx, key)
	}
	select {
	case <-c.tokenReady:
		return c.getMetadata(ctx, key)
	case c.tokenTurn <- struct{}{}:
		defer func() { <-c.tokenTurn }()
	case <-ctx.Done():
		return "", false, keyError(ctx, key, context.Cause(ctx))
	}
	switch {
	case c.tokenIn():
		return c.getMetadata(ctx, key)
	case c.tokErr != nil:
		return "", false, keyError(ctx, key, c.tokErr)
	}
	c.wave() // the token fetch ahead of this request
	body, found, err = c.getMetadata(ctx, key)
	if err != nil && !c.tokenIn() && ctx.Err() == nil && !errors.Is(err, errTokenOnly) {
		c.tokErr = errors.Unwrap(err) // a caller's ended context is not the session's failure
	}
	return body, found, err
}

// getMetadata is one GetMetadata call (the SDK retries it).
func (c *Client) getMetadata(ctx context.Context, key string) (string, bool, error) {
	out, err := c.sdk.GetMetadata(ctx, &sdkimds.GetMetadataInput{Path: key})
	if err != nil {
		var status interface{ HTTPStatusCode() int }
		// No GET goes without a token: without one, the status is the token's.
		if c.tokenIn() && errors.As(err, &status) {
			code := status.HTTPStatusCode()
			if code == http.StatusNotFound {
				return "", false, nil
			}
			return "", false, &Error{Key: key, Status: code, Err: errors.New(http.StatusText(code))}
		}
		return "", false, keyError(ctx, key, err)
	}
	defer out.Content.Close()
	b, err := io.ReadAll(io.LimitReader(out.Content, maxBody+1))
	switch {
	case err != nil:
		return "", false, keyError(ctx, key, err) // cut off mid-answer
	case len(b) > maxBody:
		return "", false, &Error{Key: key, Err: errTooLarge}
	}
	return string(b), true, nil
}

// errTooLarge: an answer over maxBody, which a cut would turn into a
// shorter, wrong one (the last line of a list truncated into another valid
// address).
var errTooLarge = fmt.Errorf("%w: answer larger than %d bytes", ErrMalformed, maxBody)

// keyError wraps a failed request; when the context ended it is the cause.
func keyError(ctx context.Context, key string, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, cause) {
		return &Error{Key: key, Err: fmt.Errorf("%w (last error: %v)", cause, err)} //nolint:errorlint // the budget is the cause; the request error is context only
	}
	return &Error{Key: key, Err: err}
}

// tokenOnly marks a request context whose GET is not to be sent (Ping).
type tokenOnly struct{}

var errTokenOnly = errors.New("token only: GET not sent")

// transport counts requests, checks the token answer (the SDK reads it
// unbounded and takes an empty one) and opens the gate when it is in.
type transport struct {
	hc HTTPClient
	c  *Client
}

func (t transport) Do(r *http.Request) (*http.Response, error) {
	isToken := r.Method == http.MethodPut && r.URL.Path == tokenPath
	if !isToken && r.Context().Value(tokenOnly{}) != nil {
		return nil, errTokenOnly
	}
	t.c.requests.Add(1)
	resp, err := t.hc.Do(r)
	if err != nil || !isToken || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	resp.Body.Close()
	switch {
	case err != nil:
		return nil, err
	case len(b) > maxBody:
		return nil, errTooLarge
	case strings.TrimSpace(string(b)) == "":
		return nil, fmt.Errorf("%w: empty token", ErrMalformed)
	}
	resp.Body = io.NopCloser(strings.NewReader(strings.TrimSpace(string(b))))
	if _, err := strconv.Atoi(resp.Header.Get(tokenTTLHeader)); err == nil {
		t.c.openGate() // else the SDK refuses the answer: the fetch failed
	}
	return resp, nil
}

func (c *Client) openGate() {
	select {
	case <-c.tokenReady:
	default:
		close(c.tokenReady)
	}
}

// retryable retries throttling (429), server errors (5xx) and connection
// errors, and a 401 the SDK's token provider marks for a fresh token;
// nothing else. A failed token fetch, whose own attempts are spent, is
// marked not retryable: honoured first so attempts do not multiply.
func retryable(err error) aws.Ternary {
	var canceled interface{ CanceledError() bool }
	switch {
	case errors.As(err, &canceled) && canceled.CanceledError(),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, ErrMalformed), errors.Is(err, errTokenOnly):
		return aws.FalseTernary
	}
	var marked interface{ RetryableError() bool }
	if errors.As(err, &marked) {
		return aws.BoolTernary(marked.RetryableError())
	}
	var status interface{ HTTPStatusCode() int }
	if errors.As(err, &status) {
		code := status.HTTPStatusCode()
		return aws.BoolTernary(code == http.StatusTooManyRequests || code >= 500)
	}
	return (retry.RetryableConnectionError{}).IsErrorRetryable(err)
}

// backoff: 50 ms, 100 ms, 200 ms ... capped at 400 ms, with jitter.
func backoff(attempt int, _ error) (time.Duration, error) {
	d := 50 * time.Millisecond << min(max(attempt-1, 0), 3)
	return d/2 + rand.N(d/2+1), nil
}
