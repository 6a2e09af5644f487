#!/usr/bin/env bash
# Lint and type-check: ruff (pyflakes, import order) on everything, mypy on the package.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check sign_mlops tests benchmarks research
.venv/bin/mypy
