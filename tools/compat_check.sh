#!/usr/bin/env bash
# `make compat-check`: the serving code on the Neuron stack's torch, tried on this CPU machine.
#
# The Neuron fleet image runs torch 2.9 on Python 3.12 (blip_serving/targets/neuron_release.toml) while the project's venv runs
# torch 2.13 on 3.11. This makes a throwaway venv with that Python and torch (from PyPI: a CUDA build that runs on
# the CPU, about 4 GB with its libraries), installs the project into it without its torch pin, builds random-tiny
# for cpu there (every artifact reloaded and compared with the module), and runs the stub's unit tests and the
# parity with transformers. Not part of `make test` (its size); run it at every Neuron release bump.
#
#   tools/compat_check.sh [setup|run|all]      (default all; COMPAT_PYTHON, COMPAT_VENV, COMPAT_TORCH override)
set -euo pipefail
cd "$(dirname "$0")/.."
MATRIX=blip_serving/targets/neuron_release.toml
field() { sed -n "s/^$1 = \"\\(.*\\)\".*/\\1/p" "$MATRIX" | head -1; }
PYTHON_VERSION=$(field python)
TORCH=${COMPAT_TORCH:-$(field torch)}
PYTHON=${COMPAT_PYTHON:-$(ls -d /root/.pyenv/versions/"$PYTHON_VERSION".*/bin/python3 2>/dev/null | head -1 || true)}
VENV=${COMPAT_VENV:-.venv-compat}
WORK=.compat

setup() {
  if [ -z "$PYTHON" ] || [ ! -x "$PYTHON" ]; then
    echo "error: no Python $PYTHON_VERSION (the Neuron image's, from $MATRIX); set COMPAT_PYTHON" >&2
    exit 2
  fi
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  # The project without its model pins, then the Neuron stack's torch with the project's other pins.
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -e .
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH" transformers==5.23.0 \
    tokenizers==0.23.3 pillow==13.0.0 pytest==9.2.0 psutil==7.2.2 hypothesis==6.170.17 pyyaml==6.0.3
  "$VENV/bin/python" -c "import sys, torch, transformers, numpy; print(f'compat venv: Python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, numpy {numpy.__version__}')"
}

run() {
  rm -rf "$WORK" && mkdir -p "$WORK"
  "$VENV/bin/python" -c "import sys, torch; print(f'Python {sys.version.split()[0]}, torch {torch.__version__}')"
  # The build verifies each artifact against the eager module (the build fails on a mismatch).
  "$VENV/bin/python" -m blip_build --target cpu --model random-tiny --artifacts "$WORK/artifacts" \
    --repository "$WORK/model_repository"
  # The stub's code, the components against transformers, preprocessing, configs and the build's refusals.
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/unit/test_components.py tests/unit/test_model_py.py \
    tests/unit/test_preprocessing.py tests/unit/test_spec_and_configs.py tests/unit/test_build.py \
    tests/unit/test_layout.py
}

case "${1:-all}" in
  setup) setup ;;
  run) run ;;
  all) setup; run ;;
  *) echo "usage: $0 [setup|run|all]" >&2; exit 2 ;;
esac
