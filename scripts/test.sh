#!/usr/bin/env bash
# The test suite: set up, then pytest (slow real-data tests skip cleanly without ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
