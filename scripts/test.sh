#!/usr/bin/env bash
# relay's test command (README): install whatever is missing, then run pytest.
#   bash scripts/test.sh [pytest args...]
# System tools come from apt-get (only when one is missing); Python packages from pip.
# The exit code is pytest's.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v turnserver >/dev/null 2>&1 || missing+=(turnserver)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
ldconfig -p 2>/dev/null | grep -q libespeak-ng || missing+=(libespeak-ng1)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v sox >/dev/null 2>&1 || missing+=(sox)
# the interop suite's foreign WebRTC stacks (tests/interop): GStreamer webrtcbin (Debian's python3 + gi), Node
/usr/bin/python3 -c "import gi; gi.require_version('GstWebRTC', '1.0'); gi.require_version('GstSdp', '1.0')" \
    >/dev/null 2>&1 || missing+=(gstreamer)
for element in webrtcbin nicesrc dtlsenc srtpenc opusenc rtpopuspay audiotestsrc appsink; do
    /usr/bin/python3 -c "import gi, sys; gi.require_version('Gst', '1.0'); from gi.repository import Gst; Gst.init(None); \
sys.exit(Gst.ElementFactory.find('$element') is None)" >/dev/null 2>&1 || { missing+=(gst-$element); break; }
done
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v firefox-esr >/dev/null 2>&1 || missing+=(firefox-esr)
command -v go >/dev/null 2>&1 || missing+=(golang-go)
[ -f /usr/share/gocode/src/github.com/pion/webrtc/go.mod ] || missing+=(golang-github-pion-webrtc.v3-dev)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ "${#missing[@]}" -gt 0 ]; then
    echo "scripts/test.sh: installing system packages (missing: ${missing[*]})" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends \
        coturn espeak-ng libespeak-ng1 postgresql chromium chromium-driver sox \
        python3-gi python3-gst-1.0 gir1.2-gst-plugins-bad-1.0 gstreamer1.0-plugins-base \
        gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-nice nodejs npm firefox-esr \
        golang-go golang-github-pion-webrtc.v3-dev
fi

# npm packages of the interop suite, outside the repository (tests/interop/conftest.py: RELAY_INTEROP_CACHE)
interop_cache="${RELAY_INTEROP_CACHE:-$HOME/.cache/relay-interop}"
if [ ! -d "$interop_cache/node_modules/werift" ] || [ ! -d "$interop_cache/node_modules/node-datachannel" ]; then
    echo "scripts/test.sh: installing werift and node-datachannel into $interop_cache" >&2
    mkdir -p "$interop_cache"
    (cd "$interop_cache" && { [ -f package.json ] || npm init -y >/dev/null; } \
        && npm install --no-audit --no-fund werift@0.24 node-datachannel@0.33 >/dev/null)
fi

python -m pip install --quiet --disable-pip-version-check -e '.[test]'
# An editable install may leave the extensions in build/: make sure they are importable in place.
python setup.py --quiet build_ext --inplace >/dev/null

exec python -m pytest "$@"
