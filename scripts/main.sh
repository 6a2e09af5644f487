#!/usr/bin/env bash
# The main job on embedded defaults: set up, then validate -> explore -> train -> evaluate ->
# export -> register -> promote. Uses data/sign_mnist_{train,test}.csv[.gz] when present,
# else synthetic Kaggle-format data. Extra arguments go to `sign-mlops train`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/sign-mlops train "$@"
