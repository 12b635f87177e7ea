# Logging for the tools/build-*.sh scripts; source it after setting BUILD_NAME.

log() { printf '[%s] %s: %s\n' "$(date -u +%H:%M:%S)" "$BUILD_NAME" "$*"; }

# Runs a long command while printing a heartbeat every minute, so CI logs show it is alive.
with_heartbeat() {
  local label="$1" start ticker
  shift
  start=$(date +%s)
  ( while sleep 60; do log "$label ... $(( $(date +%s) - start ))s"; done ) &
  ticker=$!
  if "$@"; then kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true
  else local rc=$?; kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true; return "$rc"; fi
  log "$label done in $(( $(date +%s) - start ))s"
}
