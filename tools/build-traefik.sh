#!/usr/bin/env bash
# Builds Traefik, the Gateway API implementation the real-node tests route traffic through, from
# its Go module, once per version.
#
# Why this version: the module proxy serves v3.6.12 and v3.7.11-13, and no v3.7 builds from its
# module zip: v3.7 replaces github.com/traefik/traefik/dynamic/ext with ./pkg/config/dynamic/ext, a
# nested module, and nested modules are left out of a module's zip; the proxy also answers 403 for
# several of v3.7's dependencies (lego v5's DNS providers, the go-http-auth fork). v3.6.12 (Go
# 1.25+) has all of its dependencies there.
#
# Why not `go install …@version`: Traefik's go.mod carries replace directives (its forks of
# go-http-auth and mux), which `go install` refuses outside the main module. So the module is
# downloaded and built as the main module, straight from the read-only module cache. The web
# dashboard's assets are not in the module (only a placeholder), so the binary has no dashboard;
# the tests do not use it.
#
# Layout (contract with tests/real_node/traefik.py):
#   $BERTH_CACHE/traefik-$TRAEFIK_VERSION/traefik   plus .complete, written last
#   $BERTH_CACHE/bin/traefik                        symlink, refreshed on every run
set -euo pipefail

TRAEFIK_VERSION="${TRAEFIK_VERSION:-v3.6.12}"
TRAEFIK_MODULE=github.com/traefik/traefik/v3

CACHE="${BERTH_CACHE:-$HOME/.cache/berth}"
BIN_LINKS="$CACHE/bin"
TRAEFIK_DIR="$CACHE/traefik-$TRAEFIK_VERSION"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

BUILD_NAME=build-traefik
# shellcheck source=tools/build-log.sh
source "$(dirname "${BASH_SOURCE[0]}")/build-log.sh"

# Prints the module directory of MOD@VERSION in the module cache, downloading it if needed.
module_dir() {
  go mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p'
}

build_traefik() {
  if [[ -f "$TRAEFIK_DIR/.complete" ]]; then log "cached: $TRAEFIK_DIR"; return; fi
  command -v go >/dev/null || { log "Go 1.25+ is required to build Traefik"; exit 1; }
  local src tmp="$TRAEFIK_DIR.tmp"
  log "building Traefik $TRAEFIK_VERSION (long when cold)"
  src=$(module_dir "$TRAEFIK_MODULE" "$TRAEFIK_VERSION")
  rm -rf "$tmp" && mkdir -p "$tmp"
  local ldflags="-s -w"
  ldflags+=" -X $TRAEFIK_MODULE/pkg/version.Version=$TRAEFIK_VERSION"
  ldflags+=" -X $TRAEFIK_MODULE/pkg/version.BuildDate=1970-01-01T00:00:00Z"
  (cd "$src" && with_heartbeat "go build traefik" \
    go build -trimpath -ldflags "$ldflags" -o "$tmp/traefik" ./cmd/traefik)
  touch "$tmp/.complete"
  rm -rf "$TRAEFIK_DIR" && mv "$tmp" "$TRAEFIK_DIR"
}

main() {
  local start
  start=$(date +%s)
  mkdir -p "$CACHE"
  build_traefik
  mkdir -p "$BIN_LINKS"
  ln -sfn "$TRAEFIK_DIR/traefik" "$BIN_LINKS/traefik"
  log "ready in $(( $(date +%s) - start ))s: $BIN_LINKS/traefik"
}

main "$@"
