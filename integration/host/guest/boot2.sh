#!/bin/bash
# Boot 2: boot 1's disk after a reboot (repair applied there).
#   H3 no runtime mask left; the override still in place;
#   H5 a new plain host ENI still gets ec2-net-utils' policy-routes@ethN;
#   and task cycles through the stock vpc-eni stand-in leave nothing stuck
#   now that the override is in place.
. ./lib.sh
CYCLES=$(cat cycles 2>/dev/null || echo 2)

step "H3 after reboot"
snapshot h3-reboot
kv h3_reboot_runtime_masks "$(find /run/systemd -name '*policy-routes*' -lname /dev/null 2>/dev/null | paste -sd' ')"
kv h3_reboot_masked "$(systemctl list-unit-files --plain --no-legend 'policy-routes@*' 'refresh-policy-routes@*' | awk '$2 ~ /masked/ {print $1}' | paste -sd' ')"
override h5

step "H5: a new host ENI"
host_eni 8 h5_hosteni

step "after repair: $CYCLES task cycles with the stock vpc-eni"
kv b2_cycles_run "$CYCLES"
install_upstream
for ((n = 1; n <= CYCLES; n++)); do task_cycle "$n"; done
settle "$CYCLES"
stuck b2_stuck
ecs_units_ever b2
"$BIN" doctor >"$OUT/b2-doctor.txt" 2>&1
kv b2_doctor_rc $?
"$BIN" doctor --json >"$OUT/b2-doctor.json" 2>&1
evidence b2
step "boot 2 done"
