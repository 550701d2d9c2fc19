package ecsfront

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plugin"
)

// undoBudget is the part of upstreamDelReserve that removing our own
// (partial) routing may take before the upstream DEL runs.
const undoBudget = 3 * time.Second

// add runs the upstream ADD, verifies what it claims, then installs the
// policy routing in-process. If anything after the upstream ADD fails, ours
// is undone and the upstream DEL runs (rollback).
func (fr *front) add(stdin []byte) int {
	facts, err := ParseFacts(fr.name, stdin)
	if err != nil {
		return fr.fail(err)
	}
	path, err := fr.upstreamPath()
	if err != nil {
		return fr.fail(types.NewError(types.ErrInvalidNetworkConfig, err.Error(), ""))
	}
	upTimeout, _ := fr.settings.upstreamTimeout() // validated with the settings
	if len(facts.Addrs) == 0 {
		fr.rec.addNote("config lists no ENI address (useExistingNetwork?): upstream only")
		return fr.relayVerb(path, "ADD", stdin, upTimeout)
	}
	// Everything ours can reject is rejected before the upstream runs:
	// the host namespace above all (an upstream that does not re-check it,
	// as the real vpc-eni, would configure the ENI in the host).
	tn, err := fr.preflight(facts)
	if err != nil {
		return fr.fail(err)
	}
	defer tn.Close()
	r := fr.upstreamAdd(path, stdin, upTimeout, func() {
		fr.prepareLog()
		fr.prebuildConf(facts)
	})
	_, _ = fr.stderr.Write(r.Stderr)
	if !r.ok() {
		// The real vpc-eni fails before moving the ENI, but a killed or
		// broken one may have moved it: DEL is idempotent, run it anyway.
		rb := fr.rollback(path, stdin, tn, facts, false)
		if r.Err == nil {
			fr.rec.addNote("after the upstream's failed ADD" + rb.describe(fr.name))
			_, _ = fr.stdout.Write(r.Stdout)
			return r.Exit
		}
		return fr.fail(withCleanup(upstreamAddError(fr.name, upTimeout, r), fr.name, rb))
	}
	if err := fr.oursAdd(tn, facts); err != nil {
		return fr.fail(withCleanup(err, fr.name, fr.rollback(path, stdin, tn, facts, true)))
	}
	_, _ = fr.stdout.Write(r.Stdout)
	return 0
}

// upstreamAdd runs the upstream ADD bounded by limit. The signal handler
// (spawn) and during go in while the upstream starts, before it can act:
// off the call's path.
func (fr *front) upstreamAdd(path upstreamBin, stdin []byte, limit time.Duration, during func()) *upstreamRun {
	p, r := fr.spawn(path, "ADD", nil)
	if p == nil {
		return r
	}
	during()
	ctx, cancel := context.WithTimeout(fr.ctx, limit)
	defer cancel()
	return fr.finish(ctx, p, stdin)
}

// upstreamAddError is the CNI error for an upstream ADD that did not exit
// by itself: killed at upstreamTimeout, on a signal to the front, or never
// started.
func upstreamAddError(name string, limit time.Duration, r *upstreamRun) *types.Error {
	switch {
	case r.TimedOut && errors.Is(r.Err, plugin.ErrSignal()):
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("%s ADD was interrupted by a signal to the front and killed", name), "")
	case r.TimedOut:
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("%s ADD did not finish within upstreamTimeout %s and was killed", name, limit), "")
	}
	return types.NewError(types.ErrIOFailure, fmt.Sprintf("%s ADD could not run: %v", name, r.Err), "")
}

// rolledBack is what the upstream DEL after a failed ADD did, and what it
// left: links in CNI_NETNS still carrying the ENI's MAC.
type rolledBack struct {
	del      *upstreamRun
	mac      string
	left     []string
	leftErr  error
	ifname   string
	verified bool // the namespace could be read after the DEL
}

// rollback undoes ours (undo: the plugin's ADD rolls back itself; this
// also covers an interrupted one) while the upstream DEL starts, then runs
// that DEL and looks for the ENI's MAC in the namespace: vpc-branch-eni's
// DEL deletes whatever link is named CNI_IFNAME, which need not be the
// branch link.
func (fr *front) rollback(path upstreamBin, stdin []byte, tn *plugin.TaskNetns, facts *ENIFacts, undo bool) rolledBack {
	rb := rolledBack{del: fr.upstreamDel(path, stdin, func() {
		if undo {
			fr.undoOurs(facts)
		}
	}), ifname: os.Getenv("CNI_IFNAME")}
	if facts.MAC == nil {
		return rb
	}
	rb.mac = facts.MAC.String()
	rb.left, rb.leftErr = tn.LinksWithMAC(facts.MAC)
	rb.verified = rb.leftErr == nil
	return rb
}

// describe says, for the fronted plugin, what its DEL did.
func (rb rolledBack) describe(name string) string {
	var msg string
	switch {
	case !rb.del.ok():
		msg = fmt.Sprintf("; the ENI plugin's DEL failed too (exit %d%s): the ENI may still be in CNI_NETNS until the runtime's DEL", rb.del.Exit, errSuffix(rb.del.Err))
	case name == "vpc-branch-eni":
		// It deletes the link named CNI_IFNAME; nothing goes back to the host.
		msg = fmt.Sprintf("; the ENI plugin's DEL (vpc-branch-eni: deletes the link named %s in CNI_NETNS, returns nothing to the host) exited 0", rb.ifname)
	case len(rb.left) == 0:
		msg = "; the ENI plugin's DEL returned the ENI to the host"
	default:
		msg = "; the ENI plugin's DEL exited 0"
	}
	switch {
	case len(rb.left) > 0:
		msg += fmt.Sprintf("; still in CNI_NETNS with the ENI's MAC %s: %s", rb.mac, strings.Join(rb.left, ", "))
	case rb.leftErr != nil:
		msg += fmt.Sprintf("; could not check CNI_NETNS for a link with the ENI's MAC %s: %v", rb.mac, rb.leftErr)
	case rb.verified && rb.del.ok() && name == "vpc-branch-eni":
		msg += fmt.Sprintf("; no link with the branch MAC %s is left in CNI_NETNS", rb.mac)
	}
	return msg
}

// withCleanup appends to err what the upstream DEL after a failed ADD did.
func withCleanup(err error, name string, rb rolledBack) *types.Error {
	te := *plugin.CNIError(types.ErrIOFailure, err)
	te.Msg += rb.describe(name)
	return &te
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return ": " + err.Error()
}

// preflight validates the environment and the synthesized plugin
// configuration (front settings included), then opens CNI_NETNS as the
// plugin does, refusing the host's or the front's own namespace (code 7),
// without touching anything. The namespace stays open for the checks after
// the upstream ADD.
func (fr *front) preflight(facts *ENIFacts) (*plugin.TaskNetns, error) {
	if os.Getenv("CNI_NETNS") == "" {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_NETNS is required for ADD", "")
	}
	if err := config.ValidateIfName(os.Getenv("CNI_IFNAME")); err != nil {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_IFNAME: "+err.Error(), "")
	}
	conf, err := PluginConfig(fr.settings, facts, fr.input(0))
	if err != nil {
		return nil, err
	}
	if _, err := config.Parse(conf); err != nil {
		return nil, fmt.Errorf("front settings: %w", err)
	}
	return plugin.OpenTaskNetns(os.Getenv("CNI_NETNS"))
}

// oursAdd verifies the link the upstream claims to have configured, then
// installs its policy routing through the plugin's own ADD.
func (fr *front) oursAdd(tn *plugin.TaskNetns, facts *ENIFacts) error {
	netns, ifname := os.Getenv("CNI_NETNS"), os.Getenv("CNI_IFNAME")
	obs, err := tn.Inspect(ifname)
	if err != nil {
		return types.NewError(types.ErrIOFailure, fmt.Sprintf("verify %s after %s ADD: %v", ifname, fr.name, err), "")
	}
	if p := facts.problems(obs, ifname); len(p) > 0 {
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf(
			"%s reported success but in %s: %s; nothing installed", fr.name, netns, strings.Join(p, "; ")), "")
	}
	if facts.MAC == nil {
		facts.MAC = obs.MAC // config named the ENI by eniName only
	}
	deadline := fr.start.Add(addBudget - upstreamDelReserve)
	left := time.Until(deadline)
	if left < minOursLeft {
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("%s ADD left no time for the policy routing", fr.name), "")
	}
	conf, err := fr.ourConf(facts, clampDuration(fr.linkTimeout(), left))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithDeadline(fr.ctx, deadline)
	defer cancel()
	pl := fr.newPlugin(ctx)
	pl.Netns = tn // verified above: the same namespace, not opened again
	out, err := pl.Run("ADD", fr.cmdArgs(conf))
	fr.rec.ours = out
	return err
}

// preConf is the plugin configuration of our ADD built while the upstream
// starts, for the linkTimeout it was built with.
type preConf struct {
	linkTimeout time.Duration
	conf        []byte
}

// prebuildConf builds our ADD's configuration ahead (the facts name the
// MAC; without one it comes from the verified link).
func (fr *front) prebuildConf(facts *ENIFacts) {
	if facts.MAC == nil {
		return
	}
	lt := clampDuration(fr.linkTimeout(), time.Until(fr.start.Add(addBudget-upstreamDelReserve)))
	if conf, err := PluginConfig(fr.settings, facts, fr.input(lt)); err == nil {
		fr.pre = &preConf{linkTimeout: lt, conf: conf}
	}
}

// ourConf is our ADD's configuration for linkTimeout: the one built ahead
// when it was built for the same (the budget left did not clamp it since).
func (fr *front) ourConf(facts *ENIFacts, linkTimeout time.Duration) ([]byte, error) {
	if fr.pre != nil && fr.pre.linkTimeout == linkTimeout {
		return fr.pre.conf, nil
	}
	return PluginConfig(fr.settings, facts, fr.input(linkTimeout))
}

// undoOurs removes whatever of ours a failed ADD may have left (the
// plugin's ADD rolls back itself; this also covers an interrupted one).
func (fr *front) undoOurs(facts *ENIFacts) {
	ctx, cancel := context.WithTimeout(context.Background(), undoBudget)
	defer cancel()
	fr.oursDel(ctx, facts)
}

// upstreamDel runs the upstream DEL after a failed ADD, on its own budget:
// not cancelled by SIGTERM, since the ENI must not stay in the namespace.
// before runs while the upstream starts, before it reads its stdin.
func (fr *front) upstreamDel(path upstreamBin, stdin []byte, before func()) *upstreamRun {
	p, r := fr.spawn(path, "DEL", nil)
	before()
	if p == nil {
		return r
	}
	ctx, cancel := context.WithTimeout(context.Background(), upstreamDelReserve-undoBudget)
	defer cancel()
	return fr.finish(ctx, p, stdin)
}

// del removes ours first (never failing the DEL for it: netns gone, link
// gone, nothing there), then lets the upstream DEL act and returns its
// outcome. The upstream is started before ours runs, its stdin held back
// until ours is done: its exec and runtime start overlap ours, and it can
// act on the ENI (it learns which from stdin) only after. Ours is derived
// from the kernel (protocol 236), so it holds across an agent restart that
// lost the container's /run.
func (fr *front) del(stdin []byte) int {
	path, perr := fr.upstreamPath()
	var up *upstreamProc
	var notRun *upstreamRun
	if perr == nil {
		up, notRun = fr.spawn(path, "DEL", nil)
	}
	fr.watchSignals()
	fr.prepareLog()
	facts, ferr := ParseFacts(fr.name, stdin)
	switch {
	case ferr != nil:
		fr.rec.addNote("policy routing not removed: " + ferr.Error())
	case os.Getenv("CNI_NETNS") == "":
		fr.rec.addNote("no CNI_NETNS: nothing of ours to remove")
	default:
		ctx, cancel := context.WithTimeout(fr.ctx, oursDelBudget)
		fr.oursDel(ctx, facts)
		cancel()
	}
	if perr != nil {
		return fr.fail(types.NewError(types.ErrInvalidNetworkConfig, perr.Error(), ""))
	}
	if up == nil {
		return fr.relay(notRun)
	}
	ctx, cancel := context.WithTimeout(fr.ctx, upstreamDelBudget)
	defer cancel()
	return fr.relay(fr.finish(ctx, up, stdin))
}

// oursDel runs the plugin's DEL for the ENI; failures are logged only.
func (fr *front) oursDel(ctx context.Context, facts *ENIFacts) {
	conf, err := PluginConfig(fr.settings, facts, fr.input(0))
	if err == nil {
		var out *plugin.Outcome
		out, err = fr.newPlugin(ctx).Run("DEL", fr.cmdArgs(conf))
		if fr.rec.ours == nil || len(out.Removed) > 0 {
			fr.rec.ours = out
		}
	}
	if err != nil {
		fr.rec.oursErr = err
	}
}

// check runs the upstream CHECK, then ours when the config's version has
// CHECK (0.4.0 on; the agent sends 0.3.0, which has none).
func (fr *front) check(stdin []byte) int {
	path, err := fr.upstreamPath()
	if err != nil {
		return fr.fail(types.NewError(types.ErrInvalidNetworkConfig, err.Error(), ""))
	}
	ctx, cancel := context.WithTimeout(fr.ctx, probeTimeout)
	r := fr.run(ctx, path, "CHECK", nil, stdin)
	cancel()
	if !r.ok() {
		return fr.relay(r)
	}
	facts, err := ParseFacts(fr.name, stdin)
	if err != nil {
		return fr.fail(err)
	}
	if ok, _ := version.GreaterThanOrEqualTo(facts.CNIVersion, "0.4.0"); ok && len(facts.Addrs) > 0 {
		conf, err := PluginConfig(fr.settings, facts, fr.input(0))
		if err == nil {
			ctx, cancel := context.WithTimeout(fr.ctx, probeTimeout)
			fr.rec.ours, err = fr.newPlugin(ctx).Run("CHECK", fr.cmdArgs(conf))
			cancel()
		}
		if err != nil {
			return fr.fail(err)
		}
	}
	return fr.relay(r)
}

// passThrough runs any other verb (VERSION, STATUS, GC, unknown) upstream.
func (fr *front) passThrough(verb string, stdin []byte) int {
	path, err := fr.upstreamPath()
	if err != nil {
		return fr.fail(types.NewError(types.ErrInvalidNetworkConfig, err.Error(), ""))
	}
	return fr.relayVerb(path, verb, stdin, probeTimeout)
}

func (fr *front) relayVerb(path upstreamBin, verb string, stdin []byte, limit time.Duration) int {
	ctx, cancel := context.WithTimeout(fr.ctx, limit)
	defer cancel()
	return fr.relay(fr.run(ctx, path, verb, nil, stdin))
}

// relay copies an upstream run's output and exit status; a run that could
// not start or was killed at its deadline becomes a CNI error.
func (fr *front) relay(r *upstreamRun) int {
	_, _ = fr.stderr.Write(r.Stderr)
	if r.Err != nil {
		return fr.fail(types.NewError(types.ErrTryAgainLater, fmt.Sprintf("%s %s: %v", fr.name, r.Verb, r.Err), ""))
	}
	_, _ = fr.stdout.Write(r.Stdout)
	return r.Exit
}

// input is the per-call part of the synthesized plugin configuration.
func (fr *front) input(linkTimeout time.Duration) pluginInput {
	return pluginInput{IfName: os.Getenv("CNI_IFNAME"), Netns: os.Getenv("CNI_NETNS"), LinkTimeout: linkTimeout}
}

// linkTimeout is the settings' linkTimeout (validated in preflight) or the
// plugin's default.
func (fr *front) linkTimeout() time.Duration {
	if d, err := time.ParseDuration(fr.settings.LinkTimeout); err == nil && d > 0 {
		return d
	}
	return config.DefaultLinkTimeout
}

func (fr *front) cmdArgs(conf []byte) *skel.CmdArgs {
	return &skel.CmdArgs{
		ContainerID: os.Getenv("CNI_CONTAINERID"), Netns: os.Getenv("CNI_NETNS"), IfName: os.Getenv("CNI_IFNAME"),
		Args: os.Getenv("CNI_ARGS"), Path: os.Getenv("CNI_PATH"), StdinData: conf,
	}
}

// newPlugin is the in-process plugin for one call, logging into the
// front's logger and looking ENIs up in IMDS without link altnames.
func (fr *front) newPlugin(ctx context.Context) *plugin.Plugin {
	return &plugin.Plugin{Ctx: ctx, Log: fr.log, Metadata: noAltNames{plugin.NewIMDSMetadata()}}
}
