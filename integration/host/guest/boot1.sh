#!/bin/bash
# Boot 1 on a stock host (Debian 12, amazon-ec2-net-utils 2.3.0):
#   H1 ECS task cycles through the stock vpc-eni
#      stand-in (no front): count the stuck setup-policy-routes processes,
#      measure what they cost;
#   then the operator installs our package (dpkg -i) and runs
#   H2 doctor; H3 repair (dry-run), repair --apply, doctor, repair --apply
#      again. The test reboots this disk next (boot2.sh).
. ./lib.sh
CYCLES=$(cat cycles 2>/dev/null || echo 4)

step "H1: stock host, $CYCLES task cycles"
kv cycles_run "$CYCLES"
kv guest_kernel "$(uname -r)"
kv guest_packages "$(dpkg-query -W -f '${Package} ${Version}, ' amazon-ec2-net-utils systemd udev | sed 's/, $//')"
install_upstream
for ((n = 1; n <= CYCLES; n++)); do task_cycle "$n"; done
settle "$CYCLES"
# Stuck = looping for a missing interface at both looks, 10 s apart; in
# between, what they cost: forks without a tracer, then strace.
stuck_begin h1_stuck
step "H1: measuring (forks, then strace)"
forks h1 5
# shellcheck disable=SC2046
syscalls h1 5 $(awk '{print $1}' "$OUT/h1_stuck.first")
stuck_end h1_stuck
ecs_units_ever h1
evidence h1

step "install the package"
install_deb "$IN/new.deb" h2_dpkg
grep -q '^h2_dpkg_rc=0$' "$OUT/results.env" || die "dpkg -i new.deb"

step "H2: doctor"
snapshot h2
"$BIN" doctor >"$OUT/h2-doctor.txt" 2>&1
kv h2_doctor_rc $?
"$BIN" doctor --json >"$OUT/h2-doctor.json" 2>"$OUT/h2-doctor.json.err"
kv h2_doctor_json_rc $?
snapshot h2-after # the test holds doctor to what both snapshots show

if ! "$BIN" --help 2>&1 | grep -q 'repair'; then
  kv repair_available 0
  step "H3: this build has no repair command"
  exit 0
fi
kv repair_available 1
step "H3: repair (dry run)"
# A host ENI that belongs to no task, present while repair runs (created
# now: its unit waits for networkd-wait-online's 120 s timeout, then
# restarts, so it is stable only for that long).
host_eni 9 h3_hosteni
unit_show h3_hosteni_before policy-routes@eth9.service
snapshot h3-before
timed h3_dry "$BIN" repair >"$OUT/h3-dry.txt" 2>&1
"$BIN" repair --json >"$OUT/h3-dry.json" 2>&1
kv h3_dry_json_rc $?
snapshot h3-after-dry

step "H3: repair --apply"
timed h3_apply "$BIN" repair --apply >"$OUT/h3-apply.txt" 2>&1
settle
snapshot h3-after-apply
unit_show h3_hosteni_after policy-routes@eth9.service
stuck h3_stuck
"$BIN" doctor >"$OUT/h3-doctor.txt" 2>&1
kv h3_doctor_rc $?
"$BIN" doctor --json >"$OUT/h3-doctor.json" 2>&1
forks h3 5
kv h3_syscalls_per_s 0 # no stuck process left to trace (h3_stuck_count)

step "H3: repair --apply again"
timed h3_apply2 "$BIN" repair --apply --json >"$OUT/h3-apply2.json" 2>&1
settle
snapshot h3-after-apply2
evidence h3
step "boot 1 done"
