"""Where tritonserver, its backends and the stubs' Python come from, checked before the server starts.

Where ``/opt/tritonserver`` exists (NGC's ``tritonserver`` images) its binary and backends are used. Elsewhere the
real ``tritonserver`` that the nvidia-pytriton wheel ships runs, with a backend directory laid out from the wheel's
Python backend plus the stub for this Python.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from blip_contract.env import env_default, env_name
from blip_serving.errors import TritonProcessError

NGC_TRITON_ROOT = Path("/opt/tritonserver")
# The Python interpreter whose environment the backend stubs run in (default: this one). It may differ from the
# supervisor's: the stubs need numpy < 2, a host's other tools may need numpy 2.
STUB_PYTHON = "STUB_PYTHON"
TRITON_ROOT = "TRITON_ROOT"


def pytriton_root() -> Path:
    """Where the nvidia-pytriton wheel put ``pytriton/``; found, not imported (its ``__init__`` pulls in its client)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonProcessError(
            f"no tritonserver: install the embedded-triton extra (nvidia-pytriton) or set {env_name(TRITON_ROOT)}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def stub_python() -> Path:
    return Path(env_default(STUB_PYTHON) or sys.executable)


def check_stub_numpy(python: Path) -> None:
    """Refuse numpy 2 in the stubs' environment before Triton starts, in one line.

    Triton 2.51's Python backend stub is built against numpy 1 (pybind11): under numpy 2 it reads a BYTES
    input's length prefixes as garbage and dies at the first request, while the server still reports ready.
    Measured on the GPU check (H200, numpy 2.5.2) and reproduced here with numpy 2.2.6.
    """
    probe = subprocess.run(
        [str(python), "-c", "import numpy; print(numpy.__version__)"], capture_output=True, text=True, timeout=60
    )
    version = probe.stdout.strip()
    if probe.returncode != 0:
        raise TritonProcessError(f"the stubs' Python {python} cannot import numpy: {probe.stderr.strip()[-300:]}")
    if int(version.split(".")[0]) >= 2:
        raise TritonProcessError(
            f"the stubs' Python {python} has numpy {version}; Triton 2.51's Python backend stub needs numpy < 2 "
            f"(it misreads BYTES inputs and dies): install numpy 1.26.4 there, or point {env_name(STUB_PYTHON)} at "
            "a Python that has it"
        )


def triton_installation() -> tuple[Path, Path | None]:
    """The tritonserver binary, and the NGC backends directory (None: lay one out from the wheel)."""
    root = Path(env_default(TRITON_ROOT) or NGC_TRITON_ROOT)
    if (root / "bin" / "tritonserver").is_file():
        return root / "bin" / "tritonserver", root / "backends"
    return pytriton_root() / "tritonserver" / "bin" / "tritonserver", None


def prepare_backend_directory(root: Path) -> Path:
    """``<root>/python/`` = the wheel's Python backend + this interpreter's stub, as Triton expects them."""
    wheel = pytriton_root() / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = wheel / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonProcessError(f"nvidia-pytriton has no Python backend stub for Python {version} ({stub})")
    target = root / "python"
    target.mkdir(parents=True, exist_ok=True)
    for source in (*sorted((wheel / "backends" / "python").glob("*.*")), stub):
        destination = target / source.name
        if source.is_file() and (not destination.exists() or destination.stat().st_size != source.stat().st_size):
            shutil.copy2(source, destination)
    return root
