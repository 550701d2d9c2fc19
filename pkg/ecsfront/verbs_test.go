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
	ok := withCleanup(base, "vpc-eni", rolledBack{del: &upstreamRun{}})
	if ok.Code != 11 || !strings.HasSuffix(ok.Msg, "; the ENI plugin's DEL returned the ENI to the host") {
		t.Fatalf("%+v", ok)
	}
	bad := withCleanup(errors.New("plain"), "vpc-eni", rolledBack{del: &upstreamRun{Exit: -1, TimedOut: true, Err: context.DeadlineExceeded}})
	if bad.Code != types.ErrIOFailure || !strings.Contains(bad.Msg, "DEL failed too (exit -1: context deadline exceeded)") {
		t.Fatalf("%+v", bad)
	}
	if base.Msg != "vpc-eni reported success but ..." {
		t.Fatal("withCleanup changed its argument")
	}
}

// TestRollbackDescribe: the rollback message says what the fronted
// plugin's DEL does (vpc-branch-eni returns nothing to the host) and names
// any link still carrying the ENI's MAC after it.
func TestRollbackDescribe(t *testing.T) {
	const mac = "0a:1b:2c:3d:4e:5f"
	for _, tc := range []struct {
		name, plugin string
		rb           rolledBack
		want         []string
		not          []string
	}{
		{"eni returned", "vpc-eni", rolledBack{del: &upstreamRun{}, mac: mac, verified: true},
			[]string{"; the ENI plugin's DEL returned the ENI to the host"}, []string{"still in CNI_NETNS"}},
		{"eni left behind", "vpc-eni", rolledBack{del: &upstreamRun{}, mac: mac, verified: true, left: []string{"eth0"}},
			[]string{"DEL exited 0", "still in CNI_NETNS with the ENI's MAC " + mac + ": eth0"}, []string{"returned the ENI to the host"}},
		{"branch gone", "vpc-branch-eni", rolledBack{del: &upstreamRun{}, mac: mac, verified: true, ifname: "eth0"},
			[]string{"deletes the link named eth0", "returns nothing to the host", "no link with the branch MAC " + mac + " is left"},
			[]string{"returned the ENI to the host"}},
		{"branch left behind", "vpc-branch-eni", rolledBack{del: &upstreamRun{}, mac: mac, verified: true, ifname: "eth0", left: []string{"eni1.101"}},
			[]string{"deletes the link named eth0", "still in CNI_NETNS with the ENI's MAC " + mac + ": eni1.101"},
			[]string{"returned the ENI to the host", "no link with"}},
		{"check failed", "vpc-branch-eni", rolledBack{del: &upstreamRun{}, mac: mac, leftErr: errors.New("list links: EBADF")},
			[]string{"could not check CNI_NETNS for a link with the ENI's MAC " + mac + ": list links: EBADF"}, []string{"no link with"}},
		{"del failed", "vpc-branch-eni", rolledBack{del: &upstreamRun{Exit: 1}, mac: mac, verified: true, left: []string{"eni1.101"}},
			[]string{"DEL failed too (exit 1)", "still in CNI_NETNS with the ENI's MAC " + mac + ": eni1.101"}, []string{"exited 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.rb.describe(tc.plugin)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("%q lacks %q", got, w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(got, n) {
					t.Errorf("%q says %q", got, n)
				}
			}
		})
	}
}
