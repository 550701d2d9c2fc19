package ecsinstall

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
)

// AgentExe is the ECS agent's binary inside its image, the container's
// entrypoint: the process whose argv[0] (or exe) is /agent is the agent.
const AgentExe = "/agent"

// Agent is a running ECS agent as seen from the host's /proc.
type Agent struct {
	PID  int
	Root string // <proc>/<pid>/root: the agent container's filesystem
}

// FindAgents lists the running ECS agents under procDir (normally /proc).
func FindAgents(procDir string) []Agent {
	ents, err := os.ReadDir(procDir)
	if err != nil {
		return nil
	}
	var agents []Agent
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		dir := filepath.Join(procDir, e.Name())
		if isAgent(dir) {
			agents = append(agents, Agent{PID: pid, Root: filepath.Join(dir, "root")})
		}
	}
	sort.Slice(agents, func(i, j int) bool { return agents[i].PID < agents[j].PID })
	return agents
}

func isAgent(procPID string) bool {
	if exe, err := os.Readlink(filepath.Join(procPID, "exe")); err == nil && exe == AgentExe {
		return true
	}
	b, err := os.ReadFile(filepath.Join(procPID, "cmdline"))
	if err != nil {
		return false
	}
	argv0, _, _ := strings.Cut(string(b), "\x00")
	return argv0 == AgentExe
}

// AgentEnv returns key from a running agent's environment (what ecs-init
// gave it from ecs.config).
func AgentEnv(a Agent, key string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(a.Root), "environ"))
	if err != nil {
		return "", false
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// View is where this host can see the upstream directory UP (a path as
// the agent's container sees it), if anywhere.
type View struct {
	Path  string // "" when UP is not visible from here
	Agent *Agent // set when seen through the agent's container
	How   string // for the operator
	// stop is the directory where the trust walk ends: the container's
	// root for an agent view (its ancestors are /proc), "" for a direct one.
	stop string
}

// Visible reports whether UP can be listed and verified from here.
func (v View) Visible() bool { return v.Path != "" }

// LocateUpstream finds UP: through a running agent's container root
// first (what the agent really runs), else directly on this host (below
// hostRoot: "/" but for a fixture tree). The default UP on a host without
// the agent's plugins is not a view: there the package puts only its own
// copy, which is not the agent's directory.
func LocateUpstream(up, procDir, hostRoot string) View {
	for _, a := range FindAgents(procDir) {
		p := filepath.Join(a.Root, up)
		if isDir(p) {
			a := a
			return View{Path: p, Agent: &a, stop: a.Root,
				How: fmt.Sprintf("seen through the running ECS agent's container (pid %d) at %s", a.PID, p)}
		}
	}
	direct := filepath.Join(hostRoot, up)
	if isDir(direct) && (up != ecsfront.DefaultUpstreamDir || !onlyPackageCopy(direct)) {
		return View{Path: direct, How: "seen directly on this host at " + direct}
	}
	why := "no running ECS agent (no " + AgentExe + " process under " + procDir + ")"
	if len(FindAgents(procDir)) > 0 {
		why = "the running ECS agent has no " + up
	}
	if isDir(direct) {
		why += ", and " + up + " on this host holds only this package's copy, not the agent's plugins"
	} else {
		why += ", and no " + up + " on this host"
	}
	return View{How: "not visible from here (" + why + "): writing the known set " + strings.Join(ecsfront.KnownPlugins, " ")}
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func onlyPackageCopy(dir string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if e.Name() != "ec2-policy-routes" {
			return false
		}
	}
	return true
}

// Plugins lists the plugin names in the view: every non-hidden
// executable file, and every symlink (resolved by the agent in its own
// container, not here).
func (v View) Plugins() ([]string, error) {
	ents, err := os.ReadDir(v.Path)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if fi.Mode()&os.ModeSymlink != 0 || (fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// checkTrusted applies the StrictModes rule to a plugin in the view: for
// an agent view, up to the container's root (above it is /proc).
func (v View) checkTrusted(path string) error {
	if v.stop == "" {
		return CheckTrusted(path)
	}
	return ecsfront.WalkTrusted(path, v.stop, trustedOwner)
}

// ErrNotPluginDir marks an upstream directory that does not hold the
// agent's plugins.
var ErrNotPluginDir = errors.New("not a directory of ECS CNI plugins")

// CheckPlugin verifies one upstream plugin: a trusted, executable regular
// file answering --capabilities with awsvpc-network-mode within timeout.
func (v View) CheckPlugin(ctx context.Context, name string, timeout time.Duration) error {
	p := filepath.Join(v.Path, name)
	fi, err := os.Lstat(p)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %s: %w", ErrNotPluginDir, p, err)
	case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%w: %s is not an executable file (mode %v)", ErrNotPluginDir, p, fi.Mode())
	}
	if err := v.checkTrusted(p); err != nil {
		return err
	}
	return ProbeCapabilities(ctx, p, timeout)
}

// ProbeCapabilities runs `path --capabilities` as the agent does at
// startup, bounded by timeout, and checks the answer it needs.
func ProbeCapabilities(ctx context.Context, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "--capabilities")
	cmd.Env = []string{}
	cmd.WaitDelay = time.Second // a child holding stdout must not extend the bound
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ctx.Err() != nil {
		return fmt.Errorf("%s --capabilities did not answer within %s", path, timeout)
	}
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return fmt.Errorf("%s --capabilities: %w: %s", path, err, msg)
		}
		return fmt.Errorf("%s --capabilities: %w", path, err)
	}
	var caps struct {
		Capabilities []string `json:"capabilities"`
	}
	if err := json.Unmarshal(out, &caps); err != nil {
		return fmt.Errorf("%s --capabilities printed %q, not the JSON the agent expects", path, strings.TrimSpace(string(out)))
	}
	for _, c := range caps.Capabilities {
		if c == "awsvpc-network-mode" {
			return nil
		}
	}
	return fmt.Errorf("%s --capabilities lacks awsvpc-network-mode: %s", path, strings.TrimSpace(string(out)))
}
