#!/usr/bin/env bash
# relay's install steps, shared by deploy/Dockerfile (its RUN lines call this) and CI
# (tests/deploy/test_install.py runs `build` then `runtime` into temporary directories),
# so the image and the test take the same path. Also usable on a VM (deploy/README.md).
#
#   deploy/install.sh packages build|runtime [--print]
#       Debian packages (apt-get) the build stage / the runtime need; --print only lists them.
#   deploy/install.sh build <wheel-dir>
#       Build relay's wheel from this checkout (compiles the Cython kernels; a failed compile fails).
#   deploy/install.sh runtime <wheel-dir> <venv>
#       Create <venv>, install the wheel and its dependencies, then check that the compiled kernels,
#       libopus and espeak-ng load and that `relay --help` runs.
#
# pip keeps its wheel cache (~/.cache/pip, or PIP_CACHE_DIR): the Dockerfile mounts it as a
# BuildKit cache, CI reuses it between runs.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$(dirname "$HERE")"
PYTHON="${PYTHON:-python3}"

BUILD_PACKAGES=(gcc libc6-dev)
# libopus0: relay's Opus encoder/decoder (ctypes); libespeak-ng1: the embedded TTS engine (ctypes).
RUNTIME_PACKAGES=(ca-certificates libopus0 libespeak-ng1)

die() { echo "install.sh: $*" >&2; exit 2; }

packages() {
    local -a pkgs
    case "${1:-}" in
        build) pkgs=("${BUILD_PACKAGES[@]}") ;;
        runtime) pkgs=("${RUNTIME_PACKAGES[@]}") ;;
        *) die "packages: expected build or runtime" ;;
    esac
    if [ "${2:-}" = "--print" ]; then
        printf '%s\n' "${pkgs[@]}"
        return
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${pkgs[@]}"
    rm -rf /var/lib/apt/lists/*
}

build() {
    local out="${1:?build: wheel directory}"
    mkdir -p "$out"
    # pip builds in an isolated environment with pyproject.toml's build requirements (Cython, setuptools)
    "$PYTHON" -m pip wheel --no-deps --wheel-dir "$out" "$SRC"
    local wheel
    wheel="$(find "$out" -maxdepth 1 -name 'relay-*.whl' | head -n 1)"
    [ -n "$wheel" ] || die "build: no relay wheel in $out"
    # the wheel must carry every compiled kernel: one .so per relay/_fast/*.pyx
    local want have
    want="$(find "$SRC/relay/_fast" -maxdepth 1 -name '*.pyx' | wc -l)"
    have="$("$PYTHON" -m zipfile -l "$wheel" | grep -c 'relay/_fast/[a-z0-9_]*\..*\.so')" || true
    [ "$have" -eq "$want" ] || die "build: $wheel has $have compiled kernels, expected $want"
    echo "install.sh: built $wheel ($have compiled kernels)"
}

runtime() {
    local wheels="${1:?runtime: wheel directory}" venv="${2:?runtime: venv directory}"
    local wheel
    wheel="$(find "$wheels" -maxdepth 1 -name 'relay-*.whl' | head -n 1)"
    [ -n "$wheel" ] || die "runtime: no relay wheel in $wheels"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet "$wheel"
    # run from / so the installed package is imported, not a checkout in the current directory
    (cd / && "$venv/bin/python" - <<'PY'
import relay._fast  # raises when a compiled kernel is missing (no silent fallback)
from relay.media import opus  # loads libopus at import
from relay.tts.espeak_lib import Espeak

speech = Espeak.shared().synthesise("ready")
assert len(speech.pcm16) > speech.rate_hz // 10, "espeak-ng produced no audio"
enc = opus.OpusEncoder(24000)
assert opus.OpusDecoder(24000).decode(enc.encode(speech.pcm16[:enc.frame_bytes].ljust(enc.frame_bytes, b"\0")))
print("install.sh: compiled kernels, libopus and espeak-ng load")
PY
    )
    (cd / && "$venv/bin/relay" --help >/dev/null)
    echo "install.sh: $venv/bin/relay is ready"
}

cmd="${1:-}"
shift || true
case "$cmd" in
    packages) packages "$@" ;;
    build) build "$@" ;;
    runtime) runtime "$@" ;;
    *) die "usage: install.sh packages build|runtime [--print] | build <wheel-dir> | runtime <wheel-dir> <venv>" ;;
esac
