#!/usr/bin/env bash
# make demo: a veth "ENI" is moved into a fresh task namespace by host-device
# (+ static IPAM), then ec2-policy-routes installs its policy routing from a
# local fake IMDS (integration/cmd/fake-imds on 127.0.0.1: secondary IPv4,
# delegated prefix, VPC subnet, ENI numbering); shows `ip rule` / `ip route`
# / link altnames before and after DEL. Needs root. Cleans up on exit.
set -euo pipefail
BIN=${BIN:?} TOOLS=${TOOLS:?} FAKE_IMDS=${FAKE_IMDS:?}
[[ $EUID -eq 0 ]] || { echo "make demo needs root (network namespaces)"; exit 1; }

NS=ec2pr-demo-$$
ENI=demoeni$$
ENI=${ENI:0:15}
WORK=$(mktemp -d)
cleanup() {
  [[ -n "${IMDS_PID:-}" ]] && kill "$IMDS_PID" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  ip link del "$ENI" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$NS"
ip link add "$ENI" type veth peer name "${ENI:0:13}-p"
# The ENI's MAC is how the plugin finds it in IMDS.
MAC=0a:00:00:00:01:02
ip link set "$ENI" address "$MAC"
mkdir -p "$WORK/plugins" "$WORK/net.d" "$WORK/cache"
ln -s "$BIN" "$WORK/plugins/ec2-policy-routes"
for p in host-device static; do ln -s "$TOOLS/$p" "$WORK/plugins/$p"; done

# A local IMDSv2 (never 169.254.169.254): device-number 2 on card 0 gives
# table 10000 + 100*0 + 2 = 10002, as ec2-net-utils numbers it.
cat > "$WORK/imds.json" <<JSON
{
  "primaryMac": "0a:00:00:00:00:01",
  "enis": [{
    "mac": "$MAC", "deviceNumber": 2, "networkCard": 0, "interfaceId": "eni-0de30c0ffee000002",
    "localIpv4s": ["10.0.1.25", "10.0.1.26"], "ipv4Prefixes": ["10.0.1.48/28"],
    "subnetIpv4": "10.0.1.0/24"
  }]
}
JSON
coproc IMDS { exec "$FAKE_IMDS" -config "$WORK/imds.json" -listen 127.0.0.1:0; }
# The fake prints its URL once it is listening: block on that line.
read -r -t 10 IMDS_URL <&"${IMDS[0]}" || { echo "fake IMDS did not start"; exit 1; }
echo "fake IMDS at $IMDS_URL"

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
      "imds": {"endpoint": "$IMDS_URL", "timeout": "2s"}
    }
  ]
}
JSON
# vpc-eni's IMDS block, to show it still applies to ENI-sourced traffic.
ip -n "$NS" route add blackhole 169.254.169.254/32

export CNI_PATH=$WORK/plugins NETCONFPATH=$WORK/net.d CNI_CACHE_DIR=$WORK/cache
show() {
  echo "--- ip link (task netns)"; ip -n "$NS" link show | grep -v '^ *link/' || true
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
echo "--- the ENI, back in the host namespace (altnames the plugin added are gone)"; ip link show "$ENI" | grep -v '^ *link/'
banner "plugin log"; cat "$WORK/ec2-policy-routes.log" 2>/dev/null || echo "(no log lines)"
