// Package blocking lets code that is about to block say so, so that work
// only a blocking invocation needs is done by it alone.
//
// The plugin's one such piece of work is installing its SIGTERM/SIGINT
// handler. signal.Notify starts the runtime's signal-mask thread and waits
// for it once per signal: done at startup it cost every invocation ~0.4 ms
// of CPU and, on a busy host, several ms of waiting for that thread to be
// scheduled (make bench, docs/BENCHMARKS.md). The handler only matters while
// the plugin waits (link, namespace lock, IMDS): that is where SIGTERM must
// end the wait with a clean code-11 error. An invocation that never waits
// finishes without it, and a signal there gets the default action (the
// process ends; nothing of ours outlives it: the lock is flock on an fd and
// a runtime follows a failed ADD with DEL, which removes everything we
// stamped).
package blocking

import "context"

type hookKey struct{}

// WithHook returns a context carrying f: Ahead(ctx) calls it. f must be
// safe to call more than once (e.g. guarded by sync.Once).
func WithHook(ctx context.Context, f func()) context.Context {
	return context.WithValue(ctx, hookKey{}, f)
}

// Ahead runs ctx's hook, if it has one. Call it right before blocking, so
// that the hook has completed when the wait begins.
func Ahead(ctx context.Context) {
	if f, ok := ctx.Value(hookKey{}).(func()); ok && f != nil {
		f()
	}
}
