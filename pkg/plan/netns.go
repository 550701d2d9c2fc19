package plan

import "fmt"

// NetnsID identifies a network namespace by its nsfs device and inode, as
// the kernel does; the zero value means unknown.
type NetnsID struct{ Dev, Ino uint64 }

func (id NetnsID) String() string { return fmt.Sprintf("%d:%d", id.Dev, id.Ino) }

// HostNetnsRefusal says why the plugin must not configure the target
// namespace, or "" when it may. Policy rules there would reroute a host:
// the plugin's own namespace, and PID 1's as the plugin sees it — from
// inside a container whose namespace differs from the host's, CNI_NETNS can
// still be a bind mount of the host's, which only PID 1 gives away. An
// unknown PID 1 namespace (procfs hidden) decides nothing.
func HostNetnsRefusal(target, self, pid1 NetnsID) string {
	switch {
	case target == self:
		return "the plugin's own (host) network namespace"
	case pid1 != (NetnsID{}) && target == pid1:
		return "the host's network namespace (that of PID 1)"
	}
	return ""
}
