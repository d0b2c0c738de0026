#!/usr/bin/env bash
# The prepared GPU check (`make gpu-check`): one run on a CUDA machine that has torch and transformers but no
# network and no Triton. Two steps:
#   benchmarks/gpu_check.sh carry          here, once: put what the GPU machine lacks into .gpucarry/ (git-ignored)
#                                          from this machine's venv and pip cache: the tritonclient, python-rapidjson
#                                          and protobuf wheels for Python 3.12, numpy 1.26.4 (the project's pin), and the
#                                          nvidia-pytriton wheel's
#                                          tritonserver, Python backend and 3.12 stub (about 59 MB in all)
#   benchmarks/gpu_check.sh run [ARGS]     there: unpack .gpucarry/ under /tmp, put the project on PYTHONPATH, run
#                                          `python3 -m blip_bench.gpu_check ARGS` (see its --help)
#   benchmarks/gpu_check.sh host [ARGS]    there, the same set-up, then `python3 -m blip_bench.host ARGS`: host CPU
#                                          per frame by process and requests per execute, served on the GPU
# Nothing is installed from the network in either step on the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=${GPU_CHECK_CARRY:-.gpucarry}
PY_VERSION=${GPU_CHECK_PYTHON:-3.12}  # the GPU machine's Python (3.12 on the lent H100/H200)
# The project's typed records (deployment, plan, manifest) need pydantic, in the check's Python and the stubs'.
PYDANTIC="pydantic==2.14.4 pydantic-core==2.50.5 typing-extensions==4.16.0 annotated-types==0.8.0 typing-inspection==0.4.5"

carry() {
  local venv=${VENV:-.venv} site
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  rm -rf "$CARRY" && mkdir -p "$CARRY/wheels"
  "$venv/bin/python" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PY_VERSION" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$CARRY/wheels" \
    tritonclient==2.50.0 python-rapidjson==1.20 protobuf==4.25.9 $PYDANTIC
  # For the stubs' own Python (see run): Triton 2.51's Python backend stub (pybind11) misreads numpy 2 arrays
  # (BYTES inputs arrive as garbage lengths and the stub dies); the project pins numpy 1.26.4 for that reason.
  mkdir -p "$CARRY/wheels-python"
  "$venv/bin/python" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PY_VERSION" \
    --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$CARRY/wheels-python" numpy==1.26.4 $PYDANTIC
  # tritonserver, its libraries, the Python backend and this Python's stub; not the other stubs and libpython.
  (
    cd "$site"
    find pytriton/tritonserver nvidia_pytriton.libs -type f ! -path '*/python_backend_stubs/*' \
      ! -path '*__pycache__*' ! -name 'libpython3-*'
    find "pytriton/tritonserver/python_backend_stubs/$PY_VERSION" -type f
  ) | tar -C "$site" -cJf "$CARRY/pytriton.tar.xz" -T -
  du -sh "$CARRY"/*
  grep -qx '/.gpucarry/' .git/info/exclude 2>/dev/null || echo '/.gpucarry/' >> .git/info/exclude
}

setup() {
  local site=/tmp/gpu-check-site
  if [ -d "$CARRY" ]; then
    mkdir -p "$site"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
      "$CARRY"/wheels/*.whl
    tar -C "$site" -xJf "$CARRY/pytriton.tar.xz"
    # The stubs' own Python: a venv with numpy 1.26.4 that also sees the machine's packages (torch, PIL, the
    # project), so the machine's numpy 2 stays for its scipy and transformers (replacing it breaks them).
    local stub=/tmp/gpu-check-stub purelib stub_site
    purelib=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    python3 -m venv --without-pip "$stub"
    stub_site=$("$stub/bin/python3" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$stub_site" \
      "$CARRY"/wheels-python/*.whl
    echo "import site; site.addsitedir('$purelib')" > "$stub_site/machine-site.pth"
    export BLIP_STUB_PYTHON="$stub/bin/python3"
    echo "python backend stub, libraries not found (empty: none):"
    LD_LIBRARY_PATH="$site/nvidia_pytriton.libs" ldd "$site/pytriton/tritonserver/python_backend_stubs/$PY_VERSION/triton_python_backend_stub" | grep "not found" || true
  else
    echo "no $CARRY/: the served part needs it (benchmarks/gpu_check.sh carry); running without" >&2
  fi
  # The project itself, installed into the machine's Python without dependencies or network (editable): Triton's
  # Python backend stub does not read PYTHONPATH, only the interpreter's own site-packages.
  if ! python3 -m pip install -q --no-deps --no-index --no-build-isolation -e . >/tmp/gpu-check-install.log 2>&1; then
    # What an editable install writes, without its build step: the package folders on the interpreter's path.
    purelib=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    printf '%s\n' "$PWD" "$PWD/contract" "$PWD/build" "$PWD/client" "$PWD/benchmarks" > "$purelib/blip-vqa-gpu-check.pth"
    echo "pip install -e . failed ($(tail -1 /tmp/gpu-check-install.log)); wrote $purelib/blip-vqa-gpu-check.pth"
  fi
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
}

case "${1:-}" in
  carry) shift; carry "$@" ;;
  run) shift; setup; python3 -m blip_bench.gpu_check "$@" ;;
  host) shift; setup; python3 -m blip_bench.host "$@" ;;
  *) echo "usage: $0 carry | run [gpu_check arguments] | host [blip_bench.host arguments]" >&2; exit 2 ;;
esac
