package doctor

import (
	"fmt"
	"strconv"
	"strings"
)

// maxProcStat bounds /proc/stat (a few KiB per hundred CPUs).
const maxProcStat = 4 << 20

func (d *doctor) checkLoad() {
	c := Check{ID: CheckLoad}
	b, err := d.readSmall("/proc/loadavg", 4096)
	f := strings.Fields(string(b))
	if err != nil || len(f) < 3 {
		c.Status, c.Summary = StatusSkip, "cannot read /proc/loadavg"
		d.add(c)
		return
	}
	l := &Load{}
	l.Load1, _ = strconv.ParseFloat(f[0], 64)
	l.Load5, _ = strconv.ParseFloat(f[1], 64)
	l.Load15, _ = strconv.ParseFloat(f[2], 64)
	l.CPUs = d.cpus()
	d.rep.Load = l
	c.Summary = fmt.Sprintf("load average %.2f %.2f %.2f on %d CPUs", l.Load1, l.Load5, l.Load15, l.CPUs)
	// The bug report's hosts: load ~107 with 112 stuck units, 414 on 8 vCPUs.
	// Twice the CPU count sustained over 15 minutes is worth a look; it is
	// a warning, not a verdict, since many things load a host.
	if l.CPUs > 0 && l.Load15 > 2*float64(l.CPUs) {
		c.Status = StatusWarn
		c.Summary += ": above twice the CPU count"
		c.Hint = "if setup-policy-routes processes are stuck (see above), they and the security sensors tracing their syscalls are a likely cause"
	} else {
		c.Status = StatusOK
	}
	d.add(c)
}

// cpus counts "cpuN" lines of /proc/stat (present in fixtures too).
func (d *doctor) cpus() int {
	b, err := d.readSmall("/proc/stat", maxProcStat)
	if err != nil {
		return 0
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if len(line) > 3 && strings.HasPrefix(line, "cpu") && line[3] >= '0' && line[3] <= '9' {
			n++
		}
	}
	return n
}
