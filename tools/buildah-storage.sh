# Where the tools/build-*.sh scripts keep buildah's images, layers and RUN cache mounts: under the
# cache, so a second build reuses every layer whose inputs did not change. Source after CACHE is set.
BUILDAH_STORAGE=(--root "$CACHE/containers/storage" --runroot "$CACHE/containers/run"
  --storage-driver overlay)
# buildah keeps `RUN --mount=type=cache` directories under $TMPDIR.
export TMPDIR="$CACHE/containers/tmp"
mkdir -p "$TMPDIR"
