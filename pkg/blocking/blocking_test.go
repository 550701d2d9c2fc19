package blocking

import (
	"context"
	"testing"
	"time"
)

func TestAheadRunsHookThroughDerivedContexts(t *testing.T) {
	n := 0
	ctx := WithHook(context.Background(), func() { n++ })
	derived, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	Ahead(derived)
	Ahead(derived)
	if n != 2 {
		t.Fatalf("hook ran %d times, want 2", n)
	}
}

func TestAheadWithoutHookIsNoop(t *testing.T) {
	Ahead(context.Background())
	Ahead(WithHook(context.Background(), nil))
}
