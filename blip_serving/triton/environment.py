"""The environment tritonserver and its stubs run in: the OpenMP wait policy and, off NGC, the library paths."""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Mapping
from pathlib import Path

from blip_serving.triton.install import pytriton_root, stub_python, triton_installation

# How the stubs' idle OpenMP workers wait: sleep after a short spin (GOMP_SPINCOUNT spins, about 30 us; torch's
# wheels use libgomp). A stub's team has as many threads as cores, so a long spin fights any other busy process.
# `make bench` on 2 cores (random-base, colocated, 1 instance; c=1 p50 alone / beside one busy core / idle CPU):
# ACTIVE (5 min spin) 762 / 8963 ms / a whole core; PASSIVE 839 / 1546 ms / 0; this 749 / 1572 ms / 0. libgomp's
# default (3 ms spin) measured 729 / 8231 ms. The ensemble's stubs gain as much (c=1 p50 833 -> 764 ms).
# One policy for every layout and target.
OPENMP_WAIT = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}


def openmp_wait(env: Mapping[str, str]) -> dict[str, str]:
    """The OpenMP wait settings the stubs get: the caller's own where either variable is set, else ours."""
    own = {name: env[name] for name in OPENMP_WAIT if name in env}
    return own or dict(OPENMP_WAIT)


def server_environment(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` with the OpenMP policy and, for the wheel's tritonserver, the library and stub paths."""
    env = dict(base)
    env.update(openmp_wait(env))
    if triton_installation()[1] is not None:
        return env  # NGC image: its own libraries are already where tritonserver looks
    libs = pytriton_root().parent / "nvidia_pytriton.libs"
    # The stub must load the libpython of this interpreter, not another 3.11 on the system: extension
    # modules (lib-dynload/_ssl, ...) are built against this one and fail to import otherwise.
    libpython_dir = sysconfig.get_config_var("LIBDIR") or ""
    own_libpython = Path(libpython_dir, sysconfig.get_config_var("LDLIBRARY") or "").is_file()
    paths = [libpython_dir if own_libpython else "", str(libs), env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, paths))
    # The Python stub runs the first python3 on PATH's environment: this virtual environment's, or the one
    # BLIP_STUB_PYTHON names.
    env["PATH"] = os.pathsep.join([str(stub_python().parent), env.get("PATH", "")])
    return env
