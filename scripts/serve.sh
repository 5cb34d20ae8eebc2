#!/usr/bin/env bash
# Install relay and run the server (README): bash scripts/serve.sh [--config relay.toml]
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -e .
exec relay serve "$@"
