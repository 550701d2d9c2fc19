package ecsfront

import (
	"fmt"
	"time"
)

// Time budget of one front invocation. The ECS agent gives all of a task's
// ADDs 60 s together (vpc-eni first, then ecs-bridge+ecs-ipam, aws-appmesh,
// ecs-serviceconnect) and all DELs 30 s, and SIGKILLs a plugin still running
// at the deadline (exec.CommandContext). A killed front could leave the ENI
// in the task namespace with nobody to return it, so every stage has its
// own bound and the upstream DEL that undoes a failed ADD always has time.
const (
	// addBudget is the front's whole ADD: the other 15 s of the agent's
	// 60 stay for the plugins the agent runs after vpc-eni.
	addBudget = 45 * time.Second
	// upstreamDelReserve is kept back from our part for the upstream DEL
	// that returns the ENI to the host when our part fails. vpc-eni's DEL
	// is a few netlink calls (milliseconds); 10 s covers a loaded host.
	upstreamDelReserve = 10 * time.Second
	// minOursBudget is the least our part (link wait, IMDS, apply) gets
	// after the upstream ADD, whatever upstreamTimeout says.
	minOursBudget = 5 * time.Second

	// DefaultUpstreamTimeout bounds the upstream ADD: vpc-eni's ADD is one
	// link scan and a few netlink calls (well under a second); 20 s covers
	// a host under heavy load and leaves our part 15 s.
	DefaultUpstreamTimeout = 20 * time.Second
	// MaxUpstreamTimeout keeps minOursBudget and the DEL reserve inside
	// addBudget (30 s).
	MaxUpstreamTimeout = addBudget - upstreamDelReserve - minOursBudget

	// upstreamDelBudget bounds the upstream DEL of a DEL verb; our part of
	// DEL is bounded by the plugin's own 10 s (namespace lock), so a DEL
	// takes at most 20 s of the agent's 30.
	upstreamDelBudget = 10 * time.Second
	// probeTimeout bounds --capabilities, --version and pass-through verbs
	// (VERSION, STATUS, GC): the upstream answers from memory.
	probeTimeout = 10 * time.Second
)

// upstreamTimeout is the configured bound of the upstream ADD.
func (s *Settings) upstreamTimeout() (time.Duration, error) {
	if s.UpstreamTimeout == "" {
		return DefaultUpstreamTimeout, nil
	}
	d, err := time.ParseDuration(s.UpstreamTimeout)
	if err != nil {
		return 0, fmt.Errorf("upstreamTimeout %q is not a duration (example: \"20s\")", s.UpstreamTimeout)
	}
	if d <= 0 || d > MaxUpstreamTimeout {
		return 0, fmt.Errorf("upstreamTimeout %s is out of range: must be > 0 and <= %s (the agent allows 60s for all ADDs)", d, MaxUpstreamTimeout)
	}
	return d, nil
}

// clampDuration returns d, or limit when d is longer.
func clampDuration(d, limit time.Duration) time.Duration {
	if d > limit {
		return limit
	}
	return d
}
