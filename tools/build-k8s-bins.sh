#!/usr/bin/env bash
# Builds the local Kubernetes control plane used by the operator and Helm tests, from Go modules.
#
# Why from source: dl.k8s.io and GitHub releases are unreachable on our machines; only the Go
# module proxy is. Everything lands in versioned directories under $BERTH_CACHE (default
# ~/.cache/berth), so a second run is a no-op and a version bump rebuilds only what changed.
#
# Layout (contract with tests/kube_control_plane.py):
#   $BERTH_CACHE/bin/            symlinks: etcd kube-apiserver kube-controller-manager
#                                kube-scheduler kubectl helm kwok (refreshed on every run)
#   $BERTH_CACHE/crds/           gateway-api-standard.yaml, istio-virtualservice.yaml (every
#                                control plane installs these at start)
#   $BERTH_CACHE/crds/optional/  keda-scaledobjects.yaml (installed only by the tests about KEDA,
#                                which also test a cluster without it)
#   $BERTH_CACHE/config/kwok-stages.yaml   kwok's "fast" node and pod stages (the standalone kwok
#                                binary has none built in; kwokctl embeds the same files)
#
# etcd, the four Kubernetes binaries and helm come out of ONE wrapper module and ONE `go build`,
# so client-go, apimachinery, grpc and the etcd client are compiled once. etcd is pinned to the
# version k8s.io/kubernetes itself requires (the tested pair), helm to the v3 line built on the
# same k8s.io libraries. kwok needs newer k8s.io libraries than the pinned Kubernetes, so it is a
# separate `go install`.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.4}"
HELM_VERSION="${HELM_VERSION:-v3.19.5}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-v1.4.1}"
ISTIO_API_VERSION="${ISTIO_API_VERSION:-v1.31.4}"
KEDA_VERSION="${KEDA_VERSION:-v2.21.0}"

CACHE="${BERTH_CACHE:-$HOME/.cache/berth}"
BIN_LINKS="$CACHE/bin"
CRD_DIR="$CACHE/crds"
K8S_DIR="$CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
KWOK_DIR="$CACHE/kwok-$KWOK_VERSION"
CRD_STAMP="$CRD_DIR/.gateway-api-$GATEWAY_API_VERSION-istio-api-$ISTIO_API_VERSION-keda-$KEDA_VERSION"
K8S_TOOLS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

BUILD_NAME=build-k8s-bins
# shellcheck source=tools/build-log.sh
source "$(dirname "${BASH_SOURCE[0]}")/build-log.sh"
# shellcheck source=tools/k8s-ldflags.sh
source "$(dirname "${BASH_SOURCE[0]}")/k8s-ldflags.sh"

need_go() {
  command -v go >/dev/null || { log "Go 1.24+ is required to build $1"; exit 1; }
}

# Prints the module directory of MOD@VERSION in the module cache, downloading it if needed.
module_dir() {
  go mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p'
}

# The staging modules k8s.io/kubernetes maps to ./staging in that tag's go.mod (the list grows
# between minor releases, so it is never hard-coded).
staging_modules() {
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
  sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9./-]*\) => ./staging/.*#\1#p' "$gomod"
}

write_k8s_wrapper() {
  local src="$1" staging="v0.${K8S_VERSION#v1.}" m
  mkdir -p "$src"
  {
    echo "module berth.local/k8sbins"
    echo
    echo "go 1.24.0"
    echo
    echo "require ("
    echo "	go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    echo "	helm.sh/helm/v3 $HELM_VERSION"
    echo "	k8s.io/kubernetes $K8S_VERSION"
    echo ")"
    echo
    echo "tool ("
    echo "	go.etcd.io/etcd/server/v3"
    echo "	helm.sh/helm/v3/cmd/helm"
    for m in "${K8S_TOOLS[@]}"; do echo "	k8s.io/kubernetes/cmd/$m"; done
    echo ")"
    echo
    echo "replace ("
    for m in $(staging_modules); do echo "	$m => $m $staging"; done
    echo ")"
  } >"$src/go.mod"
}

build_k8s() {
  if [[ -f "$K8S_DIR/.complete" ]]; then log "cached: $K8S_DIR"; return; fi
  need_go "Kubernetes"
  local src="$CACHE/src/$(basename "$K8S_DIR")" tmp="$K8S_DIR.tmp"
  log "building etcd $ETCD_VERSION, Kubernetes $K8S_VERSION and helm $HELM_VERSION (long when cold)"
  write_k8s_wrapper "$src"
  (cd "$src" && with_heartbeat "go mod tidy" go mod tidy)
  rm -rf "$tmp" && mkdir -p "$tmp"
  local ldflags
  ldflags="$(k8s_ldflags "$K8S_VERSION") -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  local pkgs=(go.etcd.io/etcd/server/v3 helm.sh/helm/v3/cmd/helm)
  for m in "${K8S_TOOLS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$m"); done
  (cd "$src" && with_heartbeat "go build (${#pkgs[@]} binaries)" \
    go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}")
  mv "$tmp/server" "$tmp/etcd"  # the main package is the module root: go names it "server"
  touch "$tmp/.complete"
  rm -rf "$K8S_DIR" && mv "$tmp" "$K8S_DIR"
}

build_kwok() {
  if [[ -f "$KWOK_DIR/.complete" ]]; then log "cached: $KWOK_DIR"; return; fi
  need_go "kwok"
  local tmp="$KWOK_DIR.tmp"
  log "building kwok $KWOK_VERSION"
  rm -rf "$tmp" && mkdir -p "$tmp"
  GOBIN="$tmp" with_heartbeat "go install kwok" \
    go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  touch "$tmp/.complete"
  rm -rf "$KWOK_DIR" && mv "$tmp" "$KWOK_DIR"
}

# kwok's "fast" stages: nodes become Ready, pods Running+Ready at once, deleted pods go away.
fetch_kwok_stages() {
  [[ -f "$KWOK_DIR/stages.yaml" ]] && return
  need_go "kwok's stages"
  local stages f
  stages="$(module_dir sigs.k8s.io/kwok "$KWOK_VERSION")/kustomize/stage"
  for f in "$stages"/node/fast/*.yaml "$stages"/node/heartbeat-with-lease/*.yaml \
    "$stages"/pod/fast/*.yaml; do
    [[ "$(basename "$f")" == kustomization.yaml ]] && continue
    echo "---"; cat "$f"
  done >"$KWOK_DIR/stages.yaml.tmp"
  mv "$KWOK_DIR/stages.yaml.tmp" "$KWOK_DIR/stages.yaml"
}

# Keeps the YAML documents of a multi-document file whose text matches a pattern.
yaml_docs_matching() {
  awk -v pat="$1" '
    function flush() { if (doc ~ pat) printf "---\n%s", doc; doc = "" }
    /^---/ { flush(); next }
    { doc = doc $0 "\n" }
    END { flush() }' "$2"
}

fetch_crds() {
  if [[ -f "$CRD_STAMP" ]]; then log "cached: CRDs in $CRD_DIR"; return; fi
  need_go "the CRDs"
  log "extracting the CRDs of Gateway API $GATEWAY_API_VERSION, Istio $ISTIO_API_VERSION," \
    "KEDA $KEDA_VERSION"
  local gw istio keda tmp="$CRD_DIR.tmp"
  gw=$(module_dir sigs.k8s.io/gateway-api "$GATEWAY_API_VERSION")
  istio=$(module_dir istio.io/api "$ISTIO_API_VERSION")
  keda=$(module_dir github.com/kedacore/keda/v2 "$KEDA_VERSION")
  rm -rf "$tmp" && mkdir -p "$tmp/optional"
  local f
  for f in "$gw"/config/crd/standard/*.yaml; do echo "---"; cat "$f"; done \
    >"$tmp/gateway-api-standard.yaml"
  yaml_docs_matching 'name: virtualservices[.]networking[.]istio[.]io' \
    "$istio/kubernetes/customresourcedefinitions.gen.yaml" >"$tmp/istio-virtualservice.yaml"
  grep -q 'kind: VirtualService' "$tmp/istio-virtualservice.yaml"
  cat "$keda/config/crd/bases/keda.sh_scaledobjects.yaml" >"$tmp/optional/keda-scaledobjects.yaml"
  touch "$tmp/$(basename "$CRD_STAMP")"
  rm -rf "$CRD_DIR" && mv "$tmp" "$CRD_DIR"
}

link_bins() {
  mkdir -p "$BIN_LINKS"
  local b
  for b in etcd helm "${K8S_TOOLS[@]}"; do ln -sfn "$K8S_DIR/$b" "$BIN_LINKS/$b"; done
  ln -sfn "$KWOK_DIR/kwok" "$BIN_LINKS/kwok"
  mkdir -p "$CACHE/config"
  ln -sfn "$KWOK_DIR/stages.yaml" "$CACHE/config/kwok-stages.yaml"
}

main() {
  local start kwok_job
  start=$(date +%s)
  mkdir -p "$CACHE"
  fetch_crds
  # kwok builds beside the big build: linking the six binaries leaves a core idle much of the
  # time, and kwok shares no compiled packages with it (newer k8s.io libraries).
  build_kwok &
  kwok_job=$!
  build_k8s
  wait "$kwok_job"
  fetch_kwok_stages
  link_bins
  log "ready in $(( $(date +%s) - start ))s: $BIN_LINKS, $CRD_DIR"
}

main "$@"
