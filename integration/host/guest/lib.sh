# Sourced by the guest scenarios (integration/host/guest/boot*.sh). They run
# in the Debian guest as root, from the second disk's in/ directory, and
# collect facts into $EC2PR_OUT: key=value lines in results.env and raw
# evidence files. The Go tests (integration/host) make every judgement.
# A scenario exits non-zero only when it could not do its job (a command it
# relies on failed), never because a fact is not what a test expects.
set -uo pipefail
OUT=${EC2PR_OUT:?}
IN=$PWD
BIN=/usr/sbin/ec2-policy-routes # where the package puts the CLI
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

now() { cut -d' ' -f1 /proc/uptime; }
step() {
  echo "=== $(now)s $*"
  echo "ec2pr: $(now)s $*" >/dev/console
}
kv() { echo "$1=$2" >>"$OUT/results.env"; }
die() {
  echo "FATAL: $*"
  kv fatal "$*"
  exit 1
}
kv "$(basename "$0" .sh)_start_uptime" "$(now)" # scenario.sh: boot to scenario, seconds

# timed NAME CMD...: runs CMD, records NAME_rc and NAME_seconds.
timed() {
  local name=$1 t0 rc
  shift
  t0=$(now)
  "$@"
  rc=$?
  kv "${name}_rc" "$rc"
  kv "${name}_seconds" "$(echo "$(now) $t0" | awk '{printf "%.1f", $1-$2}')"
  return 0
}

# The vpc-eni stand-in (integration/cmd/fake-vpc-eni) as the agent's own
# plugin directory holds it (ecs install --upstream points here).
UPSTREAM=/opt/ec2pr-test/amazon-ecs-cni-plugins
install_upstream() {
  mkdir -p "$UPSTREAM"
  local p
  for p in vpc-eni vpc-branch-eni ecs-bridge ecs-ipam aws-appmesh ecs-serviceconnect; do
    install -m 0755 "$IN/fake-vpc-eni" "$UPSTREAM/$p"
  done
}

install_deb() { # install_deb FILE NAME: dpkg -i, timed as NAME
  timed "$2" dpkg -i "$1" >"$OUT/$2.log" 2>&1
}

# settle [N]: bounded (60 s) wait for the task cycles' udev events to reach
# systemd: the udev queue is empty, or policy-routes@ of task N's handed-back
# ENI has started. On the stock host the queue drains slowly: every event
# runs a `systemctl enable` or `disable --now` whose daemon-reload takes
# seconds under TCG, so events lag the cycles by tens of seconds.
settle() {
  local i unit=
  [ -n "${1:-}" ] && unit="policy-routes@$(ecs_name "$1").service"
  for ((i = 0; i < 120; i++)); do
    udevadm settle --timeout=0 2>/dev/null && return 0
    [ -n "$unit" ] && [ "$(systemctl show -p ActiveState --value "$unit")" != inactive ] && return 0
    sleep 0.5
  done
  kv settle_timeout "${unit:-udev}"
}

# policy_procs: one line per running setup-policy-routes process:
# "pid iface action unit exists", exists = 1 when /sys/class/net/iface is.
policy_procs() {
  local pid iface action unit
  ps -eo pid=,args= | awk '$2 == "/bin/bash" && $3 == "/usr/bin/setup-policy-routes" {print $1, $4, $5}' |
    while read -r pid iface action; do
      unit=$(sed -n 's#^0::.*/##p' "/proc/$pid/cgroup" 2>/dev/null)
      [ -e "/sys/class/net/$iface" ] && e=1 || e=0
      echo "$pid $iface $action ${unit:-?} $e"
    done
}

# stuck_begin NAME ... stuck_end NAME: the setup-policy-routes processes
# whose interface is missing, seen at both looks (same pid, still missing):
# NAME.txt holds them, NAME_count / NAME_ifaces / NAME_pids go to
# results.env. stuck NAME: both looks, 3 s apart.
stuck_begin() { policy_procs | awk '$5 == 0' | sort >"$OUT/$1.first"; }
stuck_end() {
  comm -12 "$OUT/$1.first" <(policy_procs | awk '$5 == 0' | sort) | sort -n >"$OUT/$1.txt"
  kv "$1_count" "$(grep -c . "$OUT/$1.txt")"
  kv "$1_ifaces" "$(awk '{print $2}' "$OUT/$1.txt" | sort -u | paste -sd' ')"
  kv "$1_pids" "$(awk '{print $1}' "$OUT/$1.txt" | paste -sd' ')"
  kv "$1_start_ifaces" "$(awk '$4 ~ /^policy-routes@/ {print $2}' "$OUT/$1.txt" | sort -u | paste -sd' ')"
}
stuck() {
  stuck_begin "$1"
  sleep 3
  stuck_end "$1"
}

# forks NAME SECONDS: processes created system-wide per second over the
# window (/proc/stat "processes"), no tracer attached.
forks() {
  local a b
  a=$(awk '$1 == "processes" {print $2}' /proc/stat)
  sleep "$2"
  b=$(awk '$1 == "processes" {print $2}' /proc/stat)
  kv "$1_forks_per_s" "$(awk -v a="$a" -v b="$b" -v s="$2" 'BEGIN {printf "%.1f", (b-a)/s}')"
}

# syscalls NAME SECONDS PID...: strace -c -f on the given processes (and
# every child they fork: each `sleep 0.1` and `logger` is a fork+exec) for
# SECONDS; total calls and calls/s go to results.env. No PID: 0.
syscalls() {
  local name=$1 secs=$2
  shift 2
  if (($# == 0)); then
    kv "${name}_syscalls" 0
    kv "${name}_syscalls_per_s" 0
    return
  fi
  local args=() p
  for p in "$@"; do args+=(-p "$p"); done
  timeout -s INT "$secs" strace -c -f -q -o "$OUT/$name-strace.txt" "${args[@]}"
  local total
  total=$(awk '$NF == "total" {print $4}' "$OUT/$name-strace.txt")
  kv "${name}_syscalls" "${total:-0}"
  kv "${name}_syscalls_per_s" "$(awk -v n="${total:-0}" -v s="$secs" 'BEGIN {printf "%.0f", n/s}')"
}

# snapshot NAME: the host state that repair must or must not change, as
# text (NAME.state), compared by the tests.
snapshot() {
  {
    echo "## processes (pid iface action unit iface-exists)"
    policy_procs | sort -n
    echo "## locks"
    for f in /run/amazon-ec2-net-utils/setup-policy-routes/*; do
      [ -e "$f" ] && echo "$f $(cat "$f" 2>/dev/null)"
    done
    echo "## units"
    systemctl list-units --all --plain --no-legend 'policy-routes@*' 'refresh-policy-routes@*' | awk '{print $1, $2, $3, $4}'
    echo "## unit files"
    systemctl list-unit-files --plain --no-legend 'policy-routes@*' 'refresh-policy-routes@*' | awk '{print $1, $2}'
    echo "## templates"
    sha256sum /lib/systemd/system/policy-routes@.service /lib/systemd/system/refresh-policy-routes@.service \
      /lib/systemd/system/refresh-policy-routes@.timer /usr/lib/udev/rules.d/99-vpc-policy-routes.rules
    echo "## etc udev rules"
    (cd /etc/udev/rules.d && sha256sum -- * 2>/dev/null)
    echo "## unit dirs"
    find /etc/systemd/system /run/systemd/system /run/systemd/transient -name '*policy-routes*' -printf '%p %l\n' 2>/dev/null | sort
  } >"$OUT/$1.state"
}

# override NAME: is /etc/udev/rules.d/99-vpc-policy-routes.rules there,
# ours (marker), and its sha256.
override() {
  local f=/etc/udev/rules.d/99-vpc-policy-routes.rules
  [ -e $f ] && kv "$1_override" 1 || kv "$1_override" 0
  grep -q ec2-policy-routes $f 2>/dev/null && kv "$1_override_ours" 1 || kv "$1_override_ours" 0
  kv "$1_override_sha256" "$(sha256sum <$f 2>/dev/null | cut -d' ' -f1)"
}

# unit_show NAME UNIT: the unit's state, main pid and restarts.
unit_show() {
  systemctl show -p Id,LoadState,UnitFileState,ActiveState,SubState,MainPID,NRestarts,ExecMainStartTimestampMonotonic "$2" |
    sed "s/^/$1_/" >>"$OUT/results.env"
}

# wait_unit_started UNIT: bounded wait (60 s) for UNIT to leave "inactive".
wait_unit_started() {
  local i
  for ((i = 0; i < 120; i++)); do
    case $(systemctl show -p ActiveState --value "$1") in
    activating | active | failed | deactivating) return 0 ;;
    esac
    sleep 0.5
  done
  return 1
}

# eni_mac N / ecs_name N: task N's ENI, and the name vpc-eni's DEL gives it
# (ecs%x%x%x of the first three MAC octets).
eni_mac() { printf '0a:b%x:c%x:00:00:%02x' "$1" "$1" "$1"; }
ecs_name() { printf 'ecsab%xc%x' "$1" "$1"; }

# task_cycle N [FRONT_DIR]: one ECS task ENI's life as vpc-eni and the agent
# drive it (field notes "The ECS cycle"):
#   1. the ENI (a dummy ethN with its own MAC) appears in the host: udev "add";
#   2. about 2 s later the agent runs ADD: vpc-eni (FRONT_DIR's, i.e. the
#      front, when given; else the stand-in itself) moves it into the task
#      netns as eth0;
#   3. the task runs; DEL renames it ecs<mac octets>, moves it back to the
#      host (udev "add" for ecs…) and ECS detaches it at once (link deleted).
# The task's rules and our routes while it runs go to task-N.rules.
task_cycle() {
  local n=$1 dir=${2:-$UPSTREAM}
  local eni=eth$n mac ecs conf pid rc
  mac=$(eni_mac "$n")
  ecs=$(ecs_name "$n")
  conf='{"cniVersion":"0.3.0","name":"network-name","type":"vpc-eni","eniID":"eni-0123456789abcdef'$n'",
"eniMACAddress":"'$mac'","eniIPAddresses":["10.0.5.'$((20 + n))'/24"],"gatewayIPAddresses":["10.0.5.1"],"blockInstanceMetadata":true}'
  step "task $n: ENI $eni ($mac) attached"
  ip link add "$eni" address "$mac" type dummy || die "ip link add $eni"
  unshare --net sleep 600 & # the task: the agent names its netns /proc/<pid>/ns/net
  pid=$!
  # The agent runs vpc-eni about 2 s after the attachment (a model of its
  # timing, not a synchronisation: nothing waits for udev here on purpose).
  sleep 2
  cni() {
    CNI_COMMAND=$1 CNI_CONTAINERID=task-$n CNI_NETNS=/proc/$pid/ns/net CNI_IFNAME=eth0 CNI_PATH=$dir \
      "$dir/vpc-eni" <<<"$conf"
  }
  cni ADD >"$OUT/task-$n.add" 2>&1
  rc=$?
  kv "task${n}_add_rc" "$rc"
  {
    echo "## ip rule"
    nsenter --net=/proc/$pid/ns/net ip rule
    echo "## ip route show table all proto 236"
    nsenter --net=/proc/$pid/ns/net ip route show table all proto 236
    echo "## ip -br addr"
    nsenter --net=/proc/$pid/ns/net ip -br addr
  } >"$OUT/task-$n.rules" 2>&1
  sleep 1 # the task runs
  step "task $n: DEL ($eni back to the host as $ecs, then detached)"
  cni DEL >"$OUT/task-$n.del" 2>&1
  kv "task${n}_del_rc" "$?"
  ip link del "$ecs" || kv "task${n}_no_ecs_link" 1
  kill "$pid"
  wait "$pid" 2>/dev/null
  return 0
}

# host_eni N NAME: a plain ENI of the host (belongs to no task), stays.
host_eni() {
  local mac
  mac=$(printf '0a:e%x:00:00:00:%02x' "$1" "$1")
  step "host ENI eth$1 ($mac)"
  ip link add "eth$1" address "$mac" type dummy || die "ip link add eth$1"
  if wait_unit_started "policy-routes@eth$1.service"; then kv "$2_started" 1; else kv "$2_started" 0; fi
  unit_show "$2" "policy-routes@eth$1.service"
}

# evidence NAME: journal and process list for the post-mortem.
evidence() {
  timeout 30 journalctl -b --no-pager -o short-monotonic >"$OUT/$1-journal.txt" 2>&1
  ps -eo pid,ppid,stat,etimes,args >"$OUT/$1-ps.txt"
  timeout 20 systemctl list-units --all --plain --no-legend >"$OUT/$1-units.txt"
}

# ecs_units_ever NAME: policy-routes@ecs… units this boot ever started
# (journal) and those systemd knows now.
ecs_units_ever() {
  kv "$1_journal_ecs_units" "$(journalctl -b --no-pager -o cat _PID=1 | grep -oE 'policy-routes@ecs[^ .]*\.service' | sort -u | paste -sd' ')"
  kv "$1_listed_ecs_units" "$(systemctl list-units --all --plain --no-legend '*policy-routes@ecs*' | awk '{print $1}' | paste -sd' ')"
}
