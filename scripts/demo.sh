#!/usr/bin/env bash
# make demo: a veth "ENI" is moved into a fresh task namespace by host-device
# (+ static IPAM), then ec2-policy-routes installs its policy routing; shows
# `ip rule` / `ip route` before and after DEL. Needs root. Cleans up on exit.
set -euo pipefail
BIN=${BIN:?} TOOLS=${TOOLS:?}
[[ $EUID -eq 0 ]] || { echo "make demo needs root (network namespaces)"; exit 1; }

NS=ec2pr-demo-$$
ENI=demoeni$$
ENI=${ENI:0:15}
WORK=$(mktemp -d)
cleanup() {
  ip netns del "$NS" 2>/dev/null || true
  ip link del "$ENI" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$NS"
ip link add "$ENI" type veth peer name "${ENI:0:13}-p"
mkdir -p "$WORK/plugins" "$WORK/net.d" "$WORK/cache"
ln -s "$BIN" "$WORK/plugins/ec2-policy-routes"
for p in host-device static; do ln -s "$TOOLS/$p" "$WORK/plugins/$p"; done

cat > "$WORK/net.d/10-task-eni.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "task-eni",
  "plugins": [
    {
      "type": "host-device",
      "device": "$ENI",
      "ipam": {
        "type": "static",
        "addresses": [{"address": "10.0.1.25/24", "gateway": "10.0.1.1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.1.1"}]
      }
    },
    {
      "type": "ec2-policy-routes",
      "linkTimeout": "5s",
      "logFile": "$WORK/ec2-policy-routes.log",
      "imds": {"enabled": false}
    }
  ]
}
JSON
# vpc-eni's IMDS block, to show it still applies to ENI-sourced traffic.
ip -n "$NS" route add blackhole 169.254.169.254/32

export CNI_PATH=$WORK/plugins NETCONFPATH=$WORK/net.d CNI_CACHE_DIR=$WORK/cache
show() {
  echo "--- ip rule (task netns)"; ip -n "$NS" rule
  echo "--- ip route show table all (task netns, without local)"; ip -n "$NS" route show table all | grep -v 'table local' || true
}
banner() { printf '\n===== %s =====\n' "$*"; }

banner "before ADD"; show
banner "cnitool add task-eni"; "$TOOLS/cnitool" add task-eni "/var/run/netns/$NS"
banner "after ADD"; show
echo "--- ip route get 1.1.1.1 from 10.0.1.25"; ip -n "$NS" route get 1.1.1.1 from 10.0.1.25 || true
echo "--- ip route get 169.254.169.254 from 10.0.1.25 (must stay blocked)"
ip netns exec "$NS" ip route get 169.254.169.254 from 10.0.1.25 2>&1 || true
banner "cnitool check task-eni"; "$TOOLS/cnitool" check task-eni "/var/run/netns/$NS" && echo "CHECK ok"
banner "cnitool del task-eni"; "$TOOLS/cnitool" del task-eni "/var/run/netns/$NS"
banner "after DEL"; show
banner "plugin log"; cat "$WORK/ec2-policy-routes.log" 2>/dev/null || echo "(no log lines)"
