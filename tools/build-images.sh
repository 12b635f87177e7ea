#!/usr/bin/env bash
# Builds the server and operator images from Dockerfile.server and Dockerfile.operator themselves,
# daemonless with buildah, for the real-pod test tier (tests/real_node).
#
# No registry is reachable, so the base image the Dockerfiles name (their PYTHON_IMAGE ARG) is
# made here: Debian bookworm by debootstrap with Python 3.11, pip and venv, tagged with exactly
# that name, so the Dockerfiles build unchanged. The base also carries this machine's CA bundle:
# the package index is reached through it.
#
# Layout (contract with tests/real_node/images.py):
#   $BERTH_CACHE/images/berth-server.tar     docker-archive of berth.local/berth-server:dev
#   $BERTH_CACHE/images/berth-operator.tar   docker-archive of berth.local/berth-operator:dev
#   $BERTH_CACHE/images/<archive>.id         the image ID in the archive: a rebuild whose every
#                                            layer came from buildah's cache writes nothing
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${BERTH_CACHE:-$HOME/.cache/berth}"
IMAGE_DIR="$CACHE/images"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE_PACKAGES=python3,python3-venv,python3-pip,python-is-python3,ca-certificates

BUILD_NAME=build-images
# shellcheck source=tools/build-log.sh
source "$REPO/tools/build-log.sh"
# shellcheck source=tools/buildah-storage.sh
source "$REPO/tools/buildah-storage.sh"
bah() { buildah "${BUILDAH_STORAGE[@]}" "$@"; }

# The name both Dockerfiles build FROM by default.
base_image_name() {
  local name
  name=$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$REPO/Dockerfile.server")
  [[ "$name" == "$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$REPO/Dockerfile.operator")" ]] \
    || { log "Dockerfile.server and Dockerfile.operator name different bases"; exit 1; }
  [[ "$name" == */* ]] || name="docker.io/library/$name"
  echo "$name"
}

build_base() {
  local name="$1" container root
  if bah inspect --type image "$name" >/dev/null 2>&1; then log "cached: $name"; return; fi
  log "making $name from Debian bookworm (debootstrap)"
  container=$(bah from scratch)
  root=$(bah mount "$container")
  with_heartbeat "debootstrap" debootstrap --variant=minbase --include="$BASE_PACKAGES" \
    bookworm "$root" "$DEBIAN_MIRROR" >/dev/null
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/*
  bah umount "$container" >/dev/null
  bah config --env LANG=C.UTF-8 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd '["python3"]' "$container"
  bah commit -q "$container" "$name" >/dev/null
  bah rm "$container" >/dev/null
}

image_id() { bah images --noheading --no-trunc --format '{{.ID}}' "$1" 2>/dev/null || true; }

# build_image DOCKERFILE NAME ARCHIVE: buildah runs the Dockerfile's own steps (chroot isolation,
# the host's network for pip), then writes the archive unless it already holds this image.
# The build stage is tagged too (NAME-build): a rebuild then leaves the images it replaced
# untagged, and they are removed (each server build is ~5 GB that no later build reuses).
build_image() {
  local dockerfile="$1" name="$2" archive="$IMAGE_DIR/$3" id stage="$2-build" old old_stage
  old=$(image_id "$name"); old_stage=$(image_id "$stage")
  local build=(bah build --quiet --layers --pull=never --isolation=chroot --network=host
    -f "$REPO/$dockerfile")
  with_heartbeat "buildah build $dockerfile (build stage)" "${build[@]}" --target build \
    -t "$stage" "$REPO" >/dev/null
  with_heartbeat "buildah build $dockerfile" "${build[@]}" -t "$name" "$REPO" >/dev/null
  id=$(image_id "$name")
  remove_replaced "$old" "$id"
  remove_replaced "$old_stage" "$(image_id "$stage")"
  if [[ -f "$archive" && "$(cat "$archive.id" 2>/dev/null)" == "$id" ]]; then
    log "cached: $archive ($name unchanged)"; return
  fi
  mkdir -p "$IMAGE_DIR"
  rm -f "$archive" "$archive.id"
  with_heartbeat "writing $archive" bah push -q "$name" "docker-archive:$archive.tmp:$name"
  mv "$archive.tmp" "$archive"
  echo "$id" >"$archive.id"
  log "built $name: $(du -m "$archive" | cut -f1) MB"
}

# remove_replaced OLD NEW: the image a tag held before this build, once the tag has moved on.
remove_replaced() {
  [[ -n "$1" && "$1" != "$2" ]] || return 0
  bah rmi "$1" >/dev/null 2>&1 && log "removed the replaced image $(cut -c1-12 <<<"${1#sha256:}")" \
    || log "kept the replaced image $(cut -c1-12 <<<"${1#sha256:}") (still in use)"
}

main() {
  local start
  start=$(date +%s)
  build_base "$(base_image_name)"
  build_image Dockerfile.server berth.local/berth-server:dev berth-server.tar
  build_image Dockerfile.operator berth.local/berth-operator:dev berth-operator.tar
  log "ready in $(( $(date +%s) - start ))s: $IMAGE_DIR"
}

main "$@"
