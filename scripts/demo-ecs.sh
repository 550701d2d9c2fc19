#!/usr/bin/env bash
# make demo-ecs: the stock-ECS-agent flow on this machine. `ecs install`
# lays out a plugin directory (the front as vpc-eni, links to an upstream
# directory holding a vpc-eni stand-in, integration/cmd/fake-vpc-eni), a
# veth "ENI" with a known MAC waits in the host namespace, and the front is
# invoked exactly as the agent's libcni does (CNI_PATH = the directory only,
# cniVersion 0.3.0, name network-name, eth0, netns /proc/<pid>/ns/net, the
# agent's vpc-eni config on stdin). Shows ip rule / table after ADD, the ENI
# back in the host as ecs… after DEL, then `ecs uninstall`. The udev
# override goes to $WORK (--root), which stands in for a host with
# ec2-net-utils' rule, never to this machine's /etc/udev. Needs root.
# Everything lives in a temp dir and a throw-away netns, removed on exit.
set -euo pipefail
BIN=${BIN:?} FAKE_VPC_ENI=${FAKE_VPC_ENI:?}
[[ $EUID -eq 0 ]] || { echo "make demo-ecs needs root (network namespaces)"; exit 1; }

NS=ec2pr-ecsdemo-$$
ENI=ecsdemo$$
ENI=${ENI:0:15}
MAC=0a:1b:2c:00:00:05 # vpc-eni's DEL names it ecs%x%x%x of the first three octets: ecsa1b2c
WORK=$(mktemp -d)
cleanup() {
  [[ -n "${TASK_PID:-}" ]] && kill "$TASK_PID" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  ip link del "$ENI" 2>/dev/null || true
  ip link del ecsa1b2c 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n=== %s\n' "$*"; }

UP=$WORK/amazon-ecs-cni-plugins DIR=$WORK/var/lib/ecs/ec2-policy-routes/cni-plugins
mkdir -p "$UP" "$WORK/etc/ecs"
for p in vpc-eni vpc-branch-eni ecs-bridge ecs-ipam aws-appmesh ecs-serviceconnect; do
  install -m 0755 "$FAKE_VPC_ENI" "$UP/$p"
done
printf 'ECS_CLUSTER=demo\nECS_ENABLE_TASK_ENI=true\n' > "$WORK/etc/ecs/ecs.config"
mkdir -p "$WORK/usr/lib/udev/rules.d" # ec2-net-utils' rule, as on an ECS AMI
echo '# amazon-ec2-net-utils (stand-in)' > "$WORK/usr/lib/udev/rules.d/99-vpc-policy-routes.rules"
# No "imds": the front's default, off (task ENI facts from the agent's config).
cat > "$WORK/front.json" <<JSON
{"linkTimeout": "5s", "logFile": "$WORK/front.log"}
JSON

step "ec2-policy-routes ecs install --write (UP = $UP, the fake vpc-eni)"
echo "(DIR is a temp dir, not below /var/lib/ecs: hence the warning; no real agent runs here)"
"$BIN" ecs install --dir "$DIR" --upstream "$UP" --config "$WORK/front.json" \
  --write --ecs-config "$WORK/etc/ecs/ecs.config" --root "$WORK"
step "again: idempotent"
"$BIN" ecs install --dir "$DIR" --upstream "$UP" --config "$WORK/front.json" \
  --write --ecs-config "$WORK/etc/ecs/ecs.config" --root "$WORK" | grep -E 'nothing changed|already has'
step "the directory and ecs.config"
ls -l "$DIR" | sed "s#$WORK#\$WORK#g"
cat "$WORK/etc/ecs/ecs.config"

step "the agent's startup probes"
for p in vpc-eni vpc-branch-eni ecs-bridge ecs-ipam aws-appmesh; do
  printf '%-15s %s\n' "$p" "$("$DIR/$p" --capabilities)"
done
printf '%-15s %s\n' "vpc-eni" "$("$DIR/vpc-eni" --version)"

# The task: a namespace named, as the agent names it, by a process in it.
ip netns add "$NS"
ip netns exec "$NS" sleep 600 &
TASK_PID=$!
NETNS=/proc/$TASK_PID/ns/net
ip link add "$ENI" type veth peer name "${ENI:0:13}-p"
ip link set "$ENI" address "$MAC"
ip link set "${ENI:0:13}-p" up # the peer up, so eth0 is not linkdown in the task
ip -n "$NS" link set lo up
CONF='{"cniVersion":"0.3.0","name":"network-name","type":"vpc-eni","eniID":"eni-0123456789abcdef0",
"eniMACAddress":"'$MAC'","eniIPAddresses":["10.0.5.20/24"],"gatewayIPAddresses":["10.0.5.1"],"blockInstanceMetadata":true}'
cni() {
  CNI_COMMAND=$1 CNI_CONTAINERID=task-0123 CNI_NETNS=$NETNS CNI_IFNAME=eth0 CNI_PATH=$DIR \
    "$DIR/vpc-eni" <<<"$CONF"
}

step "host before ADD: the ENI $ENI ($MAC) waits in the host namespace"
ip -br link show "$ENI"
step "ADD through the front (CNI_PATH=\$DIR, netns $NETNS)"
cni ADD
echo
step "task netns after ADD"
ip -n "$NS" -br addr show eth0
echo "--- ip rule"; ip -n "$NS" rule
echo "--- main (vpc-eni's routes and IMDS blackhole, untouched by us)"; ip -n "$NS" route show
echo "--- ours: every table, proto 236 (ec2-policy-routes)"
ip -n "$NS" route show table all proto 236
step "DEL through the front"
cni DEL && echo "DEL ok"
echo "--- ip rule (task netns)"; ip -n "$NS" rule
echo "--- host: the ENI is back as ecs%x%x%x of its MAC"; ip -br link show ecsa1b2c
step "the front's log ($WORK/front.log)"
sed "s#$WORK#\$WORK#g" "$WORK/front.log"

step "ec2-policy-routes ecs uninstall --write"
"$BIN" ecs uninstall --dir "$DIR" --write --ecs-config "$WORK/etc/ecs/ecs.config" --root "$WORK"
cat "$WORK/etc/ecs/ecs.config"
[[ ! -e $DIR ]] && echo "$DIR removed"
[[ ! -e $WORK/etc/udev/rules.d/99-vpc-policy-routes.rules ]] && echo "udev override removed (this install placed it)"
