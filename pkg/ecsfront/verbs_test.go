package ecsfront

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plugin"
)

func TestUpstreamAddError(t *testing.T) {
	for _, tc := range []struct {
		r    upstreamRun
		code uint
		msg  string
	}{
		{upstreamRun{Exit: -1, TimedOut: true, Err: context.DeadlineExceeded}, types.ErrTryAgainLater, "vpc-eni ADD did not finish within upstreamTimeout 20s and was killed"},
		{upstreamRun{Exit: -1, TimedOut: true, Err: plugin.ErrSignal()}, types.ErrTryAgainLater, "interrupted by a signal to the front"},
		{upstreamRun{Exit: -1, Err: errors.New("exec format error")}, types.ErrIOFailure, "vpc-eni ADD could not run: exec format error"},
	} {
		te := upstreamAddError("vpc-eni", 20*time.Second, &tc.r)
		if te.Code != tc.code || te.Msg != tc.msg && !strings.Contains(te.Msg, tc.msg) {
			t.Fatalf("%+v: got %d %q", tc.r, te.Code, te.Msg)
		}
	}
}

func TestWithCleanup(t *testing.T) {
	base := types.NewError(types.ErrTryAgainLater, "vpc-eni reported success but ...", "")
	ok := withCleanup(base, &upstreamRun{})
	if ok.Code != 11 || !strings.HasSuffix(ok.Msg, "; the ENI plugin's DEL returned the ENI to the host") {
		t.Fatalf("%+v", ok)
	}
	bad := withCleanup(errors.New("plain"), &upstreamRun{Exit: -1, TimedOut: true, Err: context.DeadlineExceeded})
	if bad.Code != types.ErrIOFailure || !strings.Contains(bad.Msg, "DEL failed too (exit -1: context deadline exceeded)") {
		t.Fatalf("%+v", bad)
	}
	if base.Msg != "vpc-eni reported success but ..." {
		t.Fatal("withCleanup changed its argument")
	}
}
