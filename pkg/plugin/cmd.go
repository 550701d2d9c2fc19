package plugin

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
)

// Outcome summarises one invocation for the log.
type Outcome struct {
	Added   []string
	Removed []string
	Tables  []int
	Note    string // why nothing was done, when that is the outcome
	// IMDS requests and round trips the verb made (log line).
	IMDSRequests, IMDSRoundTrips int
}

// Status reports readiness: the plugin needs the kernel and, when
// imds.enabled, a reachable IMDS (code 50 otherwise).
func (p *Plugin) Status(args *skel.CmdArgs) error { return p.invoke("STATUS", args, p.status) }

func (p *Plugin) status(args *skel.CmdArgs, _ *Outcome) error {
	cfg, err := config.Parse(args.StdinData)
	if err != nil {
		return err
	}
	// With IMDS enabled, ADD needs it: not reachable is code 50.
	if sess := p.openMetadata(cfg); sess != nil {
		return sess.Ping(p.ctx())
	}
	return nil
}

// GC validates its input and drops the altname ownership records of
// attachments that are no longer valid. Rules and routes need no GC: they
// live and die with each task's network namespace, and the lock is flock on
// the namespace fd.
func (p *Plugin) GC(args *skel.CmdArgs) error { return p.invoke("GC", args, p.gc) }

func (p *Plugin) gc(args *skel.CmdArgs, out *Outcome) error {
	cfg, err := config.Parse(args.StdinData)
	if err != nil {
		return err
	}
	var gc struct {
		Valid []types.GCAttachment `json:"cni.dev/valid-attachments"`
		Old   []types.GCAttachment `json:"cni.dev/attachments"`
	}
	if err := json.Unmarshal(args.StdinData, &gc); err != nil {
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("cni.dev/valid-attachments: %v", err), "")
	}
	out.Note = fmt.Sprintf("%d valid attachments", len(gc.Valid)+len(gc.Old))
	p.collectState(cfg, gc.Valid, gc.Old, out)
	return nil
}

func sortedKeys(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}
