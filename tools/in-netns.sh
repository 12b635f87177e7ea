#!/usr/bin/env bash
# Runs a command inside a new network namespace with no link out, then deletes the namespace:
#   tools/in-netns.sh NAME COMMAND...
# The real-pod test tier runs its control plane, node and pods in one, so their addresses, routes
# and iptables rules exist only there and vanish with it. The command sees the name in
# BERTH_REAL_NODE_NETNS.
set -euo pipefail

name="$1"
shift
[[ -e "/run/netns/$name" ]] && ip netns delete "$name"
ip netns add "$name"
cleanup() {
  ip netns delete "$name" 2>/dev/null || true
  # `ip netns add` bind-mounts /run/netns on itself the first time; undo that when it is empty.
  if [[ -d /run/netns && -z "$(ls -A /run/netns)" ]]; then
    umount /run/netns 2>/dev/null || true
    rmdir /run/netns 2>/dev/null || true
  fi
}
trap cleanup EXIT
ip -n "$name" link set lo up
# nsenter, not `ip netns exec`: that one also remounts /sys, hiding the cgroup hierarchies the
# kubelet and runc need.
BERTH_REAL_NODE_NETNS="$name" nsenter --net="/run/netns/$name" "$@"
