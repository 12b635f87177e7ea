#!/usr/bin/env bash
# Installs what `make bench` needs beyond the project's virtualenv, once; every step is skipped
# when already done, so the bench runs it every time.
#   - wrk and h2load (Debian packages wrk, nghttp2-client): the load generators.
#   - matplotlib in the project venv (the `bench` extra): the plot.
#   - the peer, KServe's ModelServer, in its own virtualenv under ~/.cache/berth/peers/ with the
#     same TensorFlow as Berth, so both serve the same SavedModel with the same kernels.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_PY="${VENV_PY:-$ROOT/.venv/bin/python}"
KSERVE_VERSION=0.21.0
TENSORFLOW_VERSION="$("$VENV_PY" -c 'import importlib.metadata as m; print(m.version("tensorflow"))')"
PEER_VENV="${HOME}/.cache/berth/peers/kserve-${KSERVE_VERSION}-tf-${TENSORFLOW_VERSION}"

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
if ((${#missing[@]})); then
    echo ">> bench setup: apt-get install ${missing[*]}"
    SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
    $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null \
        || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi

if ! "$VENV_PY" -c 'import matplotlib' 2>/dev/null; then
    echo ">> bench setup: pip install -e '.[bench]' (matplotlib)"
    "$VENV_PY" -m pip install --quiet -e "$ROOT[bench]"
fi

if [[ ! -f "$PEER_VENV/.installed" ]]; then
    echo ">> bench setup: peer virtualenv $PEER_VENV (kserve==$KSERVE_VERSION," \
         "tensorflow==$TENSORFLOW_VERSION; a few minutes, once)"
    rm -rf "$PEER_VENV"
    python3 -m venv "$PEER_VENV"
    "$PEER_VENV/bin/pip" install --quiet --disable-pip-version-check \
        "kserve==$KSERVE_VERSION" "tensorflow==$TENSORFLOW_VERSION"
    touch "$PEER_VENV/.installed"
fi
echo "$PEER_VENV"
