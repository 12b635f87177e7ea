#!/usr/bin/env bash
# Builds what a real Kubernetes node needs on this kind of machine, for the real-pod test tier
# (tests/real_node): containerd, runc and the CNI plugins from Debian, kubelet and kube-proxy from
# the same k8s.io/kubernetes tag as the control plane, and the sandbox ("pause") image compiled
# from Kubernetes' own pause.c (no registry is reachable to pull it).
#
# kubelet and kube-proxy are built in a copy of build-k8s-bins.sh's wrapper module (same go.sum,
# same staging replaces, same ldflags), so the Go build cache of that build is reused: they share
# most of their packages with the control-plane binaries.
#
# Layout (contract with tests/real_node/node.py):
#   $BERTH_CACHE/bin/kubelet, kube-proxy     symlinks into $BERTH_CACHE/node-$K8S_VERSION
#   $BERTH_CACHE/images/pause-3.10.tar       an image archive `ctr images import` loads
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
PAUSE_VERSION=3.10
CACHE="${BERTH_CACHE:-$HOME/.cache/berth}"
NODE_DIR="$CACHE/node-$K8S_VERSION"
IMAGE_DIR="$CACHE/images"
DEBIAN_PACKAGES=(containerd runc containernetworking-plugins iptables conntrack buildah
  debootstrap)
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

BUILD_NAME=build-real-node
# shellcheck source=tools/build-log.sh
source "$(dirname "${BASH_SOURCE[0]}")/build-log.sh"
# shellcheck source=tools/k8s-ldflags.sh
source "$(dirname "${BASH_SOURCE[0]}")/k8s-ldflags.sh"
# shellcheck source=tools/buildah-storage.sh
source "$(dirname "${BASH_SOURCE[0]}")/buildah-storage.sh"

install_packages() {
  local missing=() p
  for p in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then log "installed: ${DEBIAN_PACKAGES[*]}"; return; fi
  log "installing Debian packages: ${missing[*]}"
  with_heartbeat "apt-get update" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive with_heartbeat "apt-get install" \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build_node_bins() {
  if [[ -f "$NODE_DIR/.complete" ]]; then log "cached: $NODE_DIR"; return; fi
  local wrapper="$CACHE/src/k8s-$K8S_VERSION"-etcd-*-helm-*
  # shellcheck disable=SC2086  # the glob names build-k8s-bins.sh's one wrapper directory
  wrapper=$(ls -d $wrapper | head -1)
  [[ -f "$wrapper/go.sum" ]] || { log "run tools/build-k8s-bins.sh first"; exit 1; }
  local src="$CACHE/src/node-$K8S_VERSION" tmp="$NODE_DIR.tmp"
  log "building kubelet and kube-proxy $K8S_VERSION (about 2 minutes after build-k8s-bins.sh)"
  mkdir -p "$src"
  sed 's#^tool (#tool (\n\tk8s.io/kubernetes/cmd/kubelet\n\tk8s.io/kubernetes/cmd/kube-proxy#' \
    "$wrapper/go.mod" >"$src/go.mod"
  cp "$wrapper/go.sum" "$src/go.sum"
  (cd "$src" && with_heartbeat "go mod tidy" go mod tidy)
  rm -rf "$tmp" && mkdir -p "$tmp"
  (cd "$src" && with_heartbeat "go build kubelet kube-proxy" go build -trimpath \
    -ldflags "$(k8s_ldflags "$K8S_VERSION")" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
  touch "$tmp/.complete"
  rm -rf "$NODE_DIR" && mv "$tmp" "$NODE_DIR"
}

build_pause_image() {
  local archive="$IMAGE_DIR/pause-$PAUSE_VERSION.tar" name="registry.k8s.io/pause:$PAUSE_VERSION"
  if [[ -f "$archive" ]]; then log "cached: $archive"; return; fi
  local work source container
  work=$(mktemp -d)
  source="$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c"
  [[ -f "$source" ]] || go mod download "k8s.io/kubernetes@$K8S_VERSION"
  gcc -Os -static -DVERSION="$PAUSE_VERSION" -o "$work/pause" "$source"
  container=$(buildah "${BUILDAH_STORAGE[@]}" from scratch)
  buildah "${BUILDAH_STORAGE[@]}" copy "$container" "$work/pause" /pause >/dev/null
  buildah "${BUILDAH_STORAGE[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$container"
  buildah "${BUILDAH_STORAGE[@]}" commit -q "$container" "$name" >/dev/null
  buildah "${BUILDAH_STORAGE[@]}" rm "$container" >/dev/null
  mkdir -p "$IMAGE_DIR"
  buildah "${BUILDAH_STORAGE[@]}" push -q "$name" "docker-archive:$archive.tmp:$name"
  mv "$archive.tmp" "$archive"
  rm -rf "$work"
  log "built $archive"
}

link_bins() {
  mkdir -p "$CACHE/bin"
  ln -sfn "$NODE_DIR/kubelet" "$CACHE/bin/kubelet"
  ln -sfn "$NODE_DIR/kube-proxy" "$CACHE/bin/kube-proxy"
}

main() {
  local start
  start=$(date +%s)
  install_packages
  build_node_bins
  build_pause_image
  link_bins
  log "ready in $(( $(date +%s) - start ))s"
}

main "$@"
