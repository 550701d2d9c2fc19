package kernel

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plan"
)

// Namespace identity, shared by the verbs' host-namespace refusal, their
// prevResult sandbox matching and the doctor's scan.

// NetnsOf identifies the namespace file at path by its device and inode.
func NetnsOf(path string) (plan.NetnsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return plan.NetnsID{}, err
	}
	return plan.NetnsID{Dev: uint64(st.Dev), Ino: st.Ino}, nil
}

// NetnsOfFd identifies the namespace open at fd.
func NetnsOfFd(fd int) (plan.NetnsID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return plan.NetnsID{}, err
	}
	return plan.NetnsID{Dev: uint64(st.Dev), Ino: st.Ino}, nil
}

// ThreadNetns is the namespace the calling thread runs in: the thread's,
// not the process's, since a Go thread may have switched namespaces.
func ThreadNetns() (plan.NetnsID, error) {
	return NetnsOf(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
}

// InitNetns is PID 1's namespace as this process sees it; the zero ID when
// procfs hides it.
func InitNetns() plan.NetnsID {
	id, err := NetnsOf("/proc/1/ns/net")
	if err != nil {
		return plan.NetnsID{}
	}
	return id
}
