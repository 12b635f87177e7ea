#!/usr/bin/env bash
# Installs the object-store emulators the object-store tests start on loopback, once per version.
#
#   S3     moto's standalone server, in its own virtualenv (botocore pins python-dateutil<3,
#          which the operator's kubernetes client refuses, so it cannot share .venv)
#   GCS    fake-gcs-server, built from its Go module
#   Azure  Azurite, from the npm registry
#
# Everything lands in versioned directories under $BERTH_CACHE (default ~/.cache/berth), so a
# second run is a no-op. Layout (contract with tests/store_emulators.py):
#   $BERTH_CACHE/bin/moto_server, fake-gcs-server, azurite-blob   (symlinks, refreshed every run)
set -euo pipefail

MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
FAKE_GCS_VERSION="${FAKE_GCS_VERSION:-v1.56.1}"
AZURITE_VERSION="${AZURITE_VERSION:-3.37.0}"
PYTHON="${PYTHON:-python3}"

CACHE="${BERTH_CACHE:-$HOME/.cache/berth}"
BIN_LINKS="$CACHE/bin"
MOTO_DIR="$CACHE/moto-$MOTO_VERSION"
FAKE_GCS_DIR="$CACHE/fake-gcs-server-$FAKE_GCS_VERSION"
AZURITE_DIR="$CACHE/azurite-$AZURITE_VERSION"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

BUILD_NAME=build-store-emulators
# shellcheck source=tools/build-log.sh
source "$(dirname "${BASH_SOURCE[0]}")/build-log.sh"

# Installs into DIR with the remaining arguments, in place (a venv's scripts name their own
# path); DIR/.complete is written last, so an interrupted install starts over.
build_into() {
  local dir="$1" label="$2"
  shift 2
  if [[ -f "$dir/.complete" ]]; then log "cached: $dir"; return; fi
  log "installing $label"
  rm -rf "$dir" && mkdir -p "$dir"
  with_heartbeat "$label" "$@" "$dir"
  touch "$dir/.complete"
}

install_moto() {
  "$PYTHON" -m venv "$1"
  "$1/bin/pip" install --quiet "moto[server]==$MOTO_VERSION"
}

install_fake_gcs() {
  command -v go >/dev/null || { log "Go 1.24+ is required to build fake-gcs-server"; exit 1; }
  GOBIN="$1" go install -trimpath -ldflags "-s -w" \
    "github.com/fsouza/fake-gcs-server@$FAKE_GCS_VERSION"
}

install_azurite() {
  command -v npm >/dev/null || { log "npm is required to install Azurite"; exit 1; }
  npm install --silent --no-audit --no-fund --prefix "$1" "azurite@$AZURITE_VERSION"
}

main() {
  build_into "$MOTO_DIR" "moto[server] $MOTO_VERSION" install_moto &
  local moto_job=$!
  build_into "$FAKE_GCS_DIR" "fake-gcs-server $FAKE_GCS_VERSION" install_fake_gcs &
  local gcs_job=$!
  build_into "$AZURITE_DIR" "azurite $AZURITE_VERSION" install_azurite
  wait "$moto_job"
  wait "$gcs_job"
  mkdir -p "$BIN_LINKS"
  ln -sfn "$MOTO_DIR/bin/moto_server" "$BIN_LINKS/moto_server"
  ln -sfn "$FAKE_GCS_DIR/fake-gcs-server" "$BIN_LINKS/fake-gcs-server"
  ln -sfn "$AZURITE_DIR/node_modules/.bin/azurite-blob" "$BIN_LINKS/azurite-blob"
}

main "$@"
