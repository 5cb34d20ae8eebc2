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
command -v jq >/dev/null 2>&1 || missing+=(jq)  # the docs' examples (tests/foundation/test_docs_run.py)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)

if [ "${#missing[@]}" -gt 0 ]; then
    echo "scripts/test.sh: installing system packages (missing: ${missing[*]})" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends \
        coturn espeak-ng libespeak-ng1 postgresql chromium chromium-driver sox jq openssl
fi

python -m pip install --quiet --disable-pip-version-check -e '.[test]'
# An editable install may leave the extensions in build/: make sure they are importable in place.
python setup.py --quiet build_ext --inplace >/dev/null

exec python -m pytest "$@"
