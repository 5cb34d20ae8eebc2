#!/usr/bin/env bash
# relay's test command (README): install whatever is missing, lint (ruff, mypy), then run pytest.
#   bash scripts/test.sh [pytest args...]
# System packages come from apt-get, and only the missing ones (an installed package is never
# upgraded). Python packages live in a virtual environment: the active one ($VIRTUAL_ENV), else
# ./.venv, created with python3 when absent. pip installs relay (editable) with its test extra
# only when a requirement is unmet, and leaves satisfied ones alone (no upgrades).
# The exit code is pytest's (or the failing step's: a ruff or mypy finding fails the run before pytest).
set -euo pipefail
cd "$(dirname "$0")/.."

python3=${PYTHON:-python3}
venv=${VIRTUAL_ENV:-$PWD/.venv}
py=$venv/bin/python

command -v "$python3" >/dev/null 2>&1 || { echo "scripts/test.sh: $python3 not found (relay needs Python >= 3.11)" >&2; exit 1; }
"$python3" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "scripts/test.sh: relay needs Python >= 3.11; $python3 is $("$python3" -V 2>&1) (PYTHON=python3.11 picks another)" >&2; exit 1; }

have() { command -v "$1" >/dev/null 2>&1; }
missing=()
have turnserver || missing+=(coturn)                                  # tests/foundation/test_turn.py
have espeak-ng || missing+=(espeak-ng)                                # spoken test audio
"$python3" -c 'import ctypes.util, sys; sys.exit(ctypes.util.find_library("espeak-ng") is None)' \
    || missing+=(libespeak-ng1)                                       # relay's TTS engine
ldconfig -p 2>/dev/null | grep -q libopus.so || missing+=(libopus0)        # relay's Opus codec (ctypes)
[ -e /usr/include/stdio.h ] || missing+=(libc6-dev)                   # deploy/install.sh's build stage
[ -e /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
have chromium || missing+=(chromium)                                  # tests/browser (CDP, no driver)
have pgrep || missing+=(procps)
have cc || missing+=(gcc libc6-dev)                                  # the Cython kernels
"$python3" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || missing+=(python3-dev)
[ -x "$py" ] || "$python3" -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
have sox || missing+=(sox)                                            # the docs' examples (tests/foundation/test_docs_run.py)
have jq || missing+=(jq)                                              # the docs' examples
have openssl || missing+=(openssl)                                    # the docs' examples
# the interop suite's foreign WebRTC stacks (tests/interop): GStreamer webrtcbin (Debian's python3 + gi),
# Node (werift, node-datachannel), Firefox ESR, Pion v3 (Debian's Go sources, built offline)
gst_pkgs=(python3-gi python3-gst-1.0 gir1.2-gst-plugins-bad-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
          gstreamer1.0-plugins-bad gstreamer1.0-nice)
gst_ok=1
/usr/bin/python3 -c "import gi; gi.require_version('GstWebRTC', '1.0'); gi.require_version('GstSdp', '1.0')" \
    >/dev/null 2>&1 || gst_ok=0
if [ "$gst_ok" = 1 ]; then
    for element in webrtcbin nicesrc dtlsenc srtpenc opusenc rtpopuspay audiotestsrc appsink; do
        /usr/bin/python3 -c "import gi, sys; gi.require_version('Gst', '1.0'); from gi.repository import Gst; Gst.init(None); \
sys.exit(Gst.ElementFactory.find('$element') is None)" >/dev/null 2>&1 || { gst_ok=0; break; }
    done
fi
[ "$gst_ok" = 1 ] || missing+=("${gst_pkgs[@]}")
have node || missing+=(nodejs)
have npm || missing+=(npm)
have firefox-esr || missing+=(firefox-esr)
have go || missing+=(golang-go)
[ -f /usr/share/gocode/src/github.com/pion/webrtc/go.mod ] || missing+=(golang-github-pion-webrtc.v3-dev)

if [ "${#missing[@]}" -gt 0 ]; then
    echo "scripts/test.sh: installing system packages: ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

# npm packages of the interop suite, outside the repository (tests/interop/conftest.py: RELAY_INTEROP_CACHE)
interop_cache="${RELAY_INTEROP_CACHE:-$HOME/.cache/relay-interop}"
if [ ! -d "$interop_cache/node_modules/werift" ] || [ ! -d "$interop_cache/node_modules/node-datachannel" ]; then
    echo "scripts/test.sh: installing werift and node-datachannel into $interop_cache" >&2
    mkdir -p "$interop_cache"
    (cd "$interop_cache" && { [ -f package.json ] || npm init -y >/dev/null; } \
        && npm install --no-audit --no-fund werift@0.24 node-datachannel@0.33 >/dev/null)
fi

if [ ! -x "$py" ]; then
    echo "scripts/test.sh: creating the virtual environment $venv" >&2
    "$python3" -m venv "$venv"
fi

# Is every requirement (runtime + test extra) met, and relay installed editable from here?
if ! "$py" -I - "$PWD" <<'EOF'  # -I: the installed packages, not ./relay.egg-info
import json
import sys
import tomllib
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # pytest brings packaging: nothing is installed yet
    sys.exit(1)

root = Path(sys.argv[1])
try:
    url = json.loads(metadata.distribution("relay").read_text("direct_url.json") or "{}")
except metadata.PackageNotFoundError:
    sys.exit(1)
if url.get("url") != root.as_uri() or not url.get("dir_info", {}).get("editable"):
    sys.exit(1)
project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
for line in project["dependencies"] + project["optional-dependencies"]["test"]:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate():
        continue
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        sys.exit(1)
    if not req.specifier.contains(version, prereleases=True):
        sys.exit(1)
EOF
then
    echo "scripts/test.sh: pip install -e '.[test]' into $venv" >&2
    "$py" -m pip install --quiet --disable-pip-version-check -e '.[test]'
fi
# An editable install may leave the extensions in build/: make sure they are importable in place
# (a no-op when they are up to date).
"$py" setup.py --quiet build_ext --inplace >/dev/null

# RELAY_SETUP_ONLY=1: stop here, everything installed (.ci/run does this before its install check)
[ "${RELAY_SETUP_ONLY:-0}" = 1 ] && exit 0

# Lint and types first (seconds; RELAY_SKIP_LINT=1 skips them): ruff as configured in pyproject.toml over
# all of the code, mypy over the sans-I/O core and the settings ([tool.mypy] files).
if [ "${RELAY_SKIP_LINT:-0}" != 1 ]; then
    "$py" -m ruff check --quiet relay bench tests scripts
    "$py" -m mypy
fi

exec "$py" -m pytest "$@"
