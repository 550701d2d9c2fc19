#!/bin/bash
# Boot 3 on a fresh stock host:
#   H6 the package's life: dpkg -i (an older build), ...
#   H4 `ecs install --write --upstream` (no --config), host ENI (H5) and
#      task cycles through the front as the agent invokes it;
#   H6 ... upgrade to this build (the fronts refreshed), a task through the
#      refreshed front, dpkg -r, dpkg -P, what is left.
. ./lib.sh
CYCLES=$(cat cycles 2>/dev/null || echo 3)
PKG=ec2-policy-routes

step "H6: dpkg -i old.deb"
install_deb "$IN/old.deb" h6_install
grep -q '^h6_install_rc=0$' "$OUT/results.env" || die "dpkg -i old.deb"
dpkg-query -W -f '${Version}' $PKG >"$OUT/h6-version-old.txt"
dpkg -L $PKG | sort >"$OUT/h6-files-old.txt"

step "H4: ecs install --write --upstream (no --config)"
install_upstream
mkdir -p /etc/ecs
printf 'ECS_CLUSTER=host-test\nECS_ENABLE_TASK_ENI=true\n' >/etc/ecs/ecs.config
timed h4_install "$BIN" ecs install --write --upstream "$UPSTREAM" >"$OUT/h4-install.txt" 2>&1
cp /etc/ecs/ecs.config "$OUT/h4-ecs.config"
FRONT=$(sed -n 's/^ECS_CNI_PLUGINS_PATH=//p' /etc/ecs/ecs.config | tail -n 1)
kv h4_front_dir "$FRONT"
[ -n "$FRONT" ] && [ -x "$FRONT/vpc-eni" ] || die "ecs install left no front (see h4-install.txt)"
ls -l "$FRONT" >"$OUT/h4-front-ls.txt"
cat "$FRONT/ec2-policy-routes-front.json" >"$OUT/h4-front-settings.json" 2>&1
override h4

host_eni 7 h4_hosteni
kv cycles_run "$CYCLES"
for ((n = 1; n <= CYCLES; n++)); do task_cycle "$n" "$FRONT"; done
settle "$CYCLES"
stuck_begin h4_stuck
forks h4 5 # what the host does with nothing stuck, beside H1's
stuck_end h4_stuck
ecs_units_ever h4
"$BIN" doctor >"$OUT/h4-doctor.txt" 2>&1
kv h4_doctor_rc $?
"$BIN" doctor --json >"$OUT/h4-doctor.json" 2>&1
cp /var/log/ecs/ec2-policy-routes.log "$OUT/h4-front.log" 2>/dev/null

step "H6: upgrade (dpkg -i new.deb) with the front installed"
md5sum "$FRONT/vpc-eni" "$FRONT/vpc-branch-eni" /opt/cni/bin/$PKG >"$OUT/h6-md5-before.txt"
install_deb "$IN/new.deb" h6_upgrade
dpkg-query -W -f '${Version}' $PKG >"$OUT/h6-version-new.txt"
# What the new package says its binary is, and what the fronts now hold.
kv h6_pkg_md5 "$(awk '$2 == "opt/cni/bin/'$PKG'" {print $1}' /var/lib/dpkg/info/$PKG.md5sums)"
kv h6_opt_md5 "$(md5sum </opt/cni/bin/$PKG | cut -d' ' -f1)"
kv h6_front_md5 "$(md5sum <"$FRONT/vpc-eni" | cut -d' ' -f1)"
kv h6_front_branch_md5 "$(md5sum <"$FRONT/vpc-branch-eni" | cut -d' ' -f1)"
kv h6_front_old_md5 "$(awk 'NR == 1 {print $1}' "$OUT/h6-md5-before.txt")"
ls -l "$FRONT" >"$OUT/h6-front-ls.txt"
task_cycle $((CYCLES + 1)) "$FRONT"
settle $((CYCLES + 1))
stuck h6_stuck
ecs_units_ever h6

step "H6: dpkg -r"
dpkg -L $PKG | sort >"$OUT/h6-files-new.txt"
timed h6_remove dpkg -r $PKG >"$OUT/h6-remove.log" 2>&1
while read -r f; do [ -e "$f" ] && [ ! -d "$f" ] && echo "$f"; done <"$OUT/h6-files-new.txt" >"$OUT/h6-left-after-remove.txt"
timed h6_purge dpkg -P $PKG >"$OUT/h6-purge.log" 2>&1
while read -r f; do { [ -e "$f" ] && [ ! -d "$f" ]; } || [ -L "$f" ] && echo "$f"; done <"$OUT/h6-files-new.txt" >"$OUT/h6-left-after-purge.txt"
[ -e /amazon-ecs-cni-plugins ] && kv h6_plugin_dir_after_purge 1 || kv h6_plugin_dir_after_purge 0
kv h6_dpkg_status "$(dpkg-query -W -f '${db:Status-Status}' $PKG 2>/dev/null || echo not-installed)"
# Anything named after us anywhere, and the files the operator's commands made.
find / \( -path /proc -o -path /sys -o -path /dev -o -path /run/ec2pr \) -prune -o \
  \( -iname '*ec2-policy-routes*' -o -iname '*ec2_policy_routes*' \) -print 2>/dev/null | sort >"$OUT/h6-named-after-purge.txt"
[ -e /etc/udev/rules.d/99-vpc-policy-routes.rules ] && kv h6_override_after_purge 1 || kv h6_override_after_purge 0
cp /etc/ecs/ecs.config "$OUT/h6-ecs.config"
evidence b3
step "boot 3 done"
