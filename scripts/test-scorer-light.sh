#!/usr/bin/env bash
# The scoring-only install, proven: create .venv-scorer from the packaging metadata with no extras
# (`pip install .` plus the test tools), then run the serving tests in it. The test model is built
# by the full install (.venv, from scripts/setup.sh), since the light one has no TensorFlow.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
stamp=".venv-scorer/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setting up .venv-scorer (the scoring-only install)..." >&2
  rm -rf .venv-scorer
  "$PYTHON" -m venv .venv-scorer
  .venv-scorer/bin/python -m pip install --quiet --upgrade pip
  .venv-scorer/bin/python -m pip install --quiet ".[test]"
  touch "$stamp"
fi
mkdir -p build
[ -f build/test-model.onnx ] || .venv/bin/python -m tests.model_factory build/test-model.onnx >/dev/null
echo "scoring-only install: $(du -sm .venv-scorer | cut -f1) MB (full install: $(du -sm .venv | cut -f1) MB)" >&2
SIGN_MLOPS_TEST_MODEL="$PWD/build/test-model.onnx" exec .venv-scorer/bin/python -m pytest -q "$@" \
  tests/serving/test_light_install.py tests/serving/test_hostile_inputs.py tests/serving/test_output_faults.py \
  tests/serving/test_inbox_faults.py tests/data/test_reader.py
