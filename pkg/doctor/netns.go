package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/kernel"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

type nsCandidate struct {
	key   plan.NetnsID
	open  string // a path to open it by
	paths []string
	pids  []int
}

// maxPIDsListed bounds the PIDs named per namespace in the report.
const maxPIDsListed = 8

// collectNamespaces finds network namespaces under /var/run/netns, /run/netns
// and /proc/*/ns/net, deduplicated by (dev, inode). Entries that are not nsfs
// (a fabricated tree's plain files) are ignored.
func (d *doctor) collectNamespaces() (map[plan.NetnsID]*nsCandidate, []plan.NetnsID) {
	byKey := map[plan.NetnsID]*nsCandidate{}
	var order []plan.NetnsID
	addPath := func(display, p string, pid int) {
		k, err := kernel.NetnsOf(p)
		if err != nil {
			return
		}
		var sfs unix.Statfs_t
		if err := unix.Statfs(p, &sfs); err != nil || sfs.Type != unix.NSFS_MAGIC {
			return
		}
		c := byKey[k]
		if c == nil {
			c = &nsCandidate{key: k, open: p}
			byKey[k] = c
			order = append(order, k)
		}
		if pid > 0 {
			c.pids = append(c.pids, pid)
		} else if display != "" {
			c.paths = append(c.paths, display)
		}
	}
	for _, dir := range []string{"/var/run/netns", "/run/netns"} {
		ents, _ := os.ReadDir(d.path(dir))
		for _, e := range ents {
			addPath(filepath.Join(dir, e.Name()), d.path(filepath.Join(dir, e.Name())), 0)
		}
	}
	for _, pid := range d.pidEntries() {
		addPath("", d.path(fmt.Sprintf("/proc/%d/ns/net", pid)), pid)
	}
	for _, c := range byKey { // /var/run/netns and /run/netns are usually one dir
		c.paths = dedupe(c.paths)
	}
	return byKey, order
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		real := s
		if strings.HasPrefix(s, "/var/run/") {
			real = strings.TrimPrefix(s, "/var")
		}
		if !seen[real] {
			seen[real] = true
			out = append(out, s)
		}
	}
	return out
}

// readNetns lists, per network namespace, the rules and routes of ours.
func (d *doctor) readNetns(ctx context.Context) error {
	byKey, order := d.collectNamespaces()
	host, err := kernel.ThreadNetns() // the doctor's own (host) namespace, never under the root
	hostOK := err == nil
	n := &d.f.Netns
	n.Scanned, n.Namespaces = len(order), []Namespace{}
	for _, k := range order {
		if err := ctx.Err(); err != nil {
			return err
		}
		cand := byKey[k]
		ns := Namespace{ID: k.String(), Paths: cand.paths, Host: hostOK && k == host, Rules: []string{}, Routes: []string{}, Tables: []int{}}
		sort.Ints(cand.pids)
		if len(cand.pids) > maxPIDsListed {
			ns.PIDs = cand.pids[:maxPIDsListed]
		} else {
			ns.PIDs = cand.pids
		}
		if err := readNamespace(cand.open, &ns); err != nil {
			if vanished(err) {
				continue // the task ended between listing and reading: nothing to report
			}
			ns.Error = err.Error()
			n.Errors = append(n.Errors, fmt.Sprintf("%s: %v", label(ns), err))
			continue
		}
		if len(ns.Rules)+len(ns.Routes) > 0 {
			n.Namespaces = append(n.Namespaces, ns)
		}
	}
	return nil
}

func (d *doctor) netnsVerdict() {
	c := Check{ID: CheckNetns}
	n := d.f.Netns
	if !n.Read {
		c.Status, c.Summary = StatusSkip, "namespace scan skipped (--skip-netns)"
		d.add(c)
		return
	}
	var rules, routes, orphans int
	var inHost bool
	for _, ns := range n.Namespaces {
		rules += len(ns.Rules)
		routes += len(ns.Routes)
		orphans += len(ns.OrphanTables)
		inHost = inHost || ns.Host
	}
	c.Details = n.Errors
	summary := fmt.Sprintf("%d network namespaces scanned, %d with policy routing of ours (%d rules, %d routes)",
		n.Scanned, len(n.Namespaces), rules, routes)
	switch {
	case inHost:
		c.Status = StatusProblem
		c.Summary = fmt.Sprintf("%s; rules or routes with protocol %d are in the HOST namespace, which the plugin never configures", summary, plan.Protocol)
		c.Hint = fmt.Sprintf("inspect with ip rule / ip route show table all proto %d and remove them by hand", plan.Protocol)
	case orphans > 0:
		c.Status = StatusWarn
		c.Summary = fmt.Sprintf("%s; %d tables of ours have no route through a link left (interface gone); the next ADD or DEL in that namespace removes them", summary, orphans)
	case len(n.Errors) > 0:
		c.Status = StatusWarn
		c.Summary = fmt.Sprintf("%s; %d namespaces could not be read (run as root)", summary, len(n.Errors))
	default:
		c.Status, c.Summary = StatusOK, summary
	}
	d.add(c)
}

// vanished reports an error from opening a namespace that no longer exists
// (its netns file was unmounted or its last process exited mid-scan).
func vanished(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH)
}

func label(ns Namespace) string {
	if len(ns.Paths) > 0 {
		return ns.Paths[0]
	}
	if len(ns.PIDs) > 0 {
		return "pid " + strconv.Itoa(ns.PIDs[0])
	}
	return "netns " + ns.ID
}

// readNamespace lists our rules and routes in the namespace at path.
func readNamespace(path string, ns *Namespace) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	h, err := kernel.NewHandle(uintptr(fd))
	if err != nil {
		return err
	}
	defer h.Close()
	st, err := h.ReadState()
	if err != nil {
		return err
	}
	links, err := h.Links()
	if err != nil {
		return err
	}
	names := make(map[int]string, len(links))
	for _, l := range links {
		names[l.Index] = l.Name
	}
	linkName := func(index int) string { return names[index] }
	tables := map[int]bool{}
	for _, r := range st.OurRules {
		ns.Rules = append(ns.Rules, r.String())
		tables[r.Table] = true
	}
	for _, r := range st.OurRoutes {
		ns.Routes = append(ns.Routes, r.Format(linkName))
		tables[r.Table] = true
	}
	for t := range tables {
		ns.Tables = append(ns.Tables, t)
	}
	sort.Ints(ns.Tables)
	for t := range st.Observed().Orphans {
		ns.OrphanTables = append(ns.OrphanTables, t)
	}
	sort.Ints(ns.OrphanTables)
	return nil
}
