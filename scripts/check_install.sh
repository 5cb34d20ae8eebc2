#!/usr/bin/env bash
# What a new user gets: the checkout's files (tracked and untracked, not ignored: no build/,
# no in-place compiled kernels) installed with a plain, non-editable `pip install .` (no extras)
# into a fresh venv, then run from outside the checkout so only the installed package is seen:
#   relay --help, relay-bench --help, an import of every shipped module,
#   relay serve (127.0.0.1, a free port, a temp data dir) answering /healthz and printing the console link.
# Fails (non-zero, one line naming the step) on any missing dependency. pip's wheel cache
# (~/.cache/pip) is reused, so only relay's own wheel is built.
#   bash scripts/check_install.sh      (PYTHON=python3.12 to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
python=${PYTHON:-python3}

work=$(mktemp -d "${TMPDIR:-/tmp}/relay-install.XXXXXX")
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "check_install: FAILED: $*" >&2; exit 1; }
step() { echo "check_install: [${SECONDS}s] $*" >&2; }

# The files a clean clone has (working-tree contents, so uncommitted edits are checked too).
mkdir "$work/src"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$src" ls-files -z --cached --others --exclude-standard \
        | (cd "$src" && xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' _) \
        | tar -C "$src" --null -T - -cf - | tar -C "$work/src" -xf -
else
    cp -a "$src/." "$work/src/"
fi

step "fresh venv ($("$python" --version 2>&1))"
"$python" -m venv "$work/venv" || fail "python3 -m venv (Debian/Ubuntu: apt-get install python3-venv)"
bin=$work/venv/bin
unset PYTHONPATH PYTHONHOME

step "pip install . (no extras)"
"$bin/pip" install --quiet --disable-pip-version-check "$work/src" || fail "pip install ."

cd "$work"  # away from the sources: only the installed package can be imported
"$bin/relay" --help >/dev/null || fail "relay --help"
"$bin/relay-bench" --help >/dev/null || fail "relay-bench --help"

step "import every shipped module"
"$bin/python" - <<'EOF' || fail "a shipped module does not import (a runtime dependency missing from [project].dependencies?)"
import importlib
import pkgutil
import sys

import bench
import relay

bad = []
for pkg in (relay, bench):
    for mod in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if mod.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(mod.name)
        except Exception as exc:  # report every module, then fail once
            bad.append(f"{mod.name}: {type(exc).__name__}: {exc}")
for line in bad:
    print(f"check_install: {line}", file=sys.stderr)
sys.exit(1 if bad else 0)
EOF

step "relay serve"
mkdir "$work/data"
RELAY_HOST=127.0.0.1 RELAY_PORT=0 RELAY_DATA_DIR="$work/data" RELAY_LOG_FORMAT=text \
    "$bin/relay" serve >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
link=""
for _ in $(seq 1 300); do  # up to 30 s on a loaded machine
    link=$(grep -m1 -o 'http://127\.0\.0\.1:[0-9]*/#workspace_key=rwk_[A-Za-z0-9_-]*' "$work/serve.out" 2>/dev/null || true)
    [ -n "$link" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$link" ]; then
    tail -n 20 "$work/serve.err" >&2
    fail "relay serve printed no console link"
fi
base=${link%%/#*}
"$bin/python" - "$base/healthz" <<'EOF' || { tail -n 20 "$work/serve.err" >&2; fail "relay serve: GET /healthz"; }
import sys
import urllib.request

with urllib.request.urlopen(sys.argv[1], timeout=10) as resp:
    body = resp.read()
    assert resp.status == 200, resp.status
print(f"check_install: GET {sys.argv[1]} -> 200 {body[:80]!r}", file=sys.stderr)
EOF
kill -TERM "$server_pid"
rc=0
wait "$server_pid" || rc=$?
server_pid=""
[ "$rc" -eq 0 ] || fail "relay serve exited $rc on SIGTERM"
step "ok"
