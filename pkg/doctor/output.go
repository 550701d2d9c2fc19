package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// WriteText renders the report for a person.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	host := r.Hostname
	if r.Root != "/" {
		host = "root " + r.Root
	}
	fmt.Fprintf(&b, "ec2-policy-routes doctor %s — %s — %s\n\n", r.Version, host, r.Time.Format("2006-01-02T15:04:05Z"))
	for _, c := range r.Checks {
		fmt.Fprintf(&b, "%-9s %s: %s\n", "["+strings.ToUpper(string(c.Status))+"]", c.ID, c.Summary)
		for _, d := range c.Details {
			fmt.Fprintf(&b, "            %s\n", d)
		}
		if c.Hint != "" && c.Status != StatusOK {
			fmt.Fprintf(&b, "          → %s\n", c.Hint)
		}
	}
	if len(r.Namespaces) > 0 {
		b.WriteString("\nPolicy routing owned by ec2-policy-routes (protocol 236), per network namespace:\n")
		for _, ns := range r.Namespaces {
			fmt.Fprintf(&b, "  %s\n", nsTitle(ns))
			for _, s := range ns.Rules {
				fmt.Fprintf(&b, "    %s\n", s)
			}
			for _, s := range ns.Routes {
				fmt.Fprintf(&b, "    %s\n", s)
			}
			if len(ns.OrphanTables) > 0 {
				fmt.Fprintf(&b, "    orphaned tables (no link left): %v\n", ns.OrphanTables)
			}
		}
	}
	verdict := "HEALTHY"
	if !r.Healthy {
		verdict = "PROBLEMS FOUND"
	}
	fmt.Fprintf(&b, "\n%s: %d problems, %d warnings\n", verdict, r.Problems, r.Warnings)
	_, err := io.WriteString(w, b.String())
	return err
}

func nsTitle(ns Namespace) string {
	var parts []string
	if ns.Host {
		parts = append(parts, "HOST namespace")
	}
	parts = append(parts, ns.Paths...)
	if len(ns.PIDs) > 0 {
		ps := make([]string, len(ns.PIDs))
		for i, p := range ns.PIDs {
			ps[i] = strconv.Itoa(p)
		}
		parts = append(parts, "pids "+strings.Join(ps, ","))
	}
	return strings.Join(parts, " ") + " [nsfs " + ns.ID + "] tables " + fmt.Sprint(ns.Tables)
}

// WriteJSON renders the report as one JSON document (for SSM Run Command
// and fleet collection).
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// MetricPrefix starts every metric name.
const MetricPrefix = "ec2_policy_routes_doctor_"

// WritePrometheus renders the report in the node_exporter textfile
// collector format. Write it to a temporary file and rename it into the
// collector directory so the collector never reads half a file.
func WritePrometheus(w io.Writer, r *Report) error {
	var m promWriter
	m.checks(r)
	m.netUtils(r)
	m.units(r)
	m.host(r)
	m.namespaces(r)
	_, err := io.WriteString(w, m.b.String())
	return err
}

// promWriter renders gauges in the Prometheus text format.
type promWriter struct{ b strings.Builder }

func (m *promWriter) metric(name, help string, samples ...string) {
	fmt.Fprintf(&m.b, "# HELP %s%s %s\n# TYPE %s%s gauge\n", MetricPrefix, name, help, MetricPrefix, name)
	for _, s := range samples {
		fmt.Fprintf(&m.b, "%s%s%s\n", MetricPrefix, name, s)
	}
}

func val(v any) string { return " " + fmt.Sprint(v) }

func b2i(ok bool) int {
	if ok {
		return 1
	}
	return 0
}

func (m *promWriter) checks(r *Report) {
	m.metric("healthy", "1 when no check found a problem.", val(b2i(r.Healthy)))
	m.metric("problems", "Checks that found a problem.", val(r.Problems))
	m.metric("warnings", "Checks that raised a warning.", val(r.Warnings))
	var checks []string
	for _, c := range r.Checks {
		checks = append(checks, fmt.Sprintf("{check=%q,status=%q} 1", c.ID, c.Status))
	}
	m.metric("check", "One series per check; the status label is ok, warn, problem or skip.", checks...)
}

// netUtils: ec2-net-utils' processes and lock files.
func (m *promWriter) netUtils(r *Report) {
	missing := map[string]bool{}
	for _, p := range r.Processes {
		if !p.InterfaceExists {
			missing[p.Interface] = true
		}
	}
	m.metric("setup_policy_routes_processes", "Running ec2-net-utils setup-policy-routes processes.", val(len(r.Processes)))
	m.metric("setup_policy_routes_missing_interfaces", "Distinct interfaces missing from /sys/class/net that setup-policy-routes processes wait for.", val(len(missing)))
	var stale int
	for _, l := range r.LockFiles {
		if l.Stale {
			stale++
		}
	}
	m.metric("lock_files", "ec2-net-utils per-interface lock files.", val(len(r.LockFiles)))
	m.metric("stale_lock_files", "ec2-net-utils lock files whose owner is dead or not setup-policy-routes.", val(stale))
}

func (m *promWriter) units(r *Report) {
	if !r.UnitsListed {
		return
	}
	states := map[string]int{}
	var missingUnits int
	for _, u := range r.Units {
		states[u.Active]++
		if LiveState(u.Active) && !u.InterfaceExists {
			missingUnits++
		}
	}
	keys := make([]string, 0, len(states))
	for k := range states {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var samples []string
	for _, k := range keys {
		samples = append(samples, fmt.Sprintf("{active=%q} %d", k, states[k]))
	}
	if len(samples) == 0 {
		samples = []string{`{active="active"} 0`}
	}
	m.metric("policy_routes_units", "policy-routes@ and refresh-policy-routes@ units by ACTIVE state.", samples...)
	m.metric("policy_routes_units_missing_interface", "Live policy-routes units whose interface is missing from /sys/class/net.", val(missingUnits))
}

// host: load and the ECS front.
func (m *promWriter) host(r *Report) {
	if r.Load != nil {
		m.metric("load1", "1-minute load average.", val(r.Load.Load1))
		m.metric("load15", "15-minute load average.", val(r.Load.Load15))
		m.metric("cpus", "CPUs counted in /proc/stat.", val(r.Load.CPUs))
	}
	if r.ECS != nil {
		m.metric("ecs_front_installed", "1 when ECS_CNI_PLUGINS_PATH names an installed ec2-policy-routes front.", val(b2i(r.ECS.Installed)))
		m.metric("ecs_front_missing_plugins", "Plugins the ECS agent uses that do not resolve in the front's directory.", val(len(r.ECS.Missing)))
		m.metric("ecs_front_stale_fronts", "Front binaries that differ from the package's binary.", val(len(r.ECS.Stale)))
	}
}

func (m *promWriter) namespaces(r *Report) {
	var rules, routes, orphans int
	for _, ns := range r.Namespaces {
		rules += len(ns.Rules)
		routes += len(ns.Routes)
		orphans += len(ns.OrphanTables)
	}
	m.metric("netns_scanned", "Network namespaces scanned.", val(r.NamespacesScanned))
	m.metric("netns_errors", "Network namespaces that could not be read.", val(r.NamespaceErrors))
	m.metric("netns_with_policy_routing", "Network namespaces holding rules or routes of ec2-policy-routes.", val(len(r.Namespaces)))
	m.metric("owned_rules", "Rules with protocol 236 across namespaces.", val(rules))
	m.metric("owned_routes", "Routes with protocol 236 across namespaces.", val(routes))
	m.metric("orphan_tables", "Tables of ours with no route through a link left.", val(orphans))
	m.metric("last_run_timestamp_seconds", "When the doctor ran.", val(r.Time.Unix()))
}
