#!/usr/bin/env python3
"""Lock files with hashes for every image and environment of ``docker/images.toml``, resolved by uv.

``tools/locks.py write`` (``make lock``) writes ``requirements/<name>.lock`` for each entry: pyproject.toml's pins and the
entry's extras, resolved against the registry for the entry's Python and platform, every wheel hashed.
``tools/locks.py check`` resolves them again into a temporary folder and fails, naming the lock, where one no
longer resolves or differs from the committed file: a pin with no wheel for an image's Python or platform fails here,
not in an image build. torch's CPU build is taken from PyTorch's CPU index when it answers, else from the wheels in
pip's find-links (``pip config``); the Neuron release's own packages are left out (they come from its repository).
``tools/locks.py install NAME --python BIN`` installs a lock into the environment of ``BIN`` with pip, hashes
checked, taking torch's CPU build from the same places (``make install``, ``make install-dev`` and the images).
Standard library only: it runs before any environment exists.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import MISSING, dataclass, field, fields
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
MATRIX = ROOT / "docker" / "images.toml"
HEADER = "# Written by `make lock` (tools/locks.py) from pyproject.toml and docker/images.toml: do not edit.\n"


class MatrixError(ValueError):
    """docker/images.toml does not validate; the message is one line naming the file and the key."""


@dataclass(frozen=True)
class LockEntry:
    """One image (``[images.<name>]``) or environment (``[environments.<name>]``) of the matrix.

    The matrix is read by the base Python before any virtual environment exists (``make install`` runs this file),
    so its record is a frozen dataclass rather than pydantic, held to the same rule: every key is a field, and an
    unknown one is refused with the nearest field's name."""

    python: str
    platform: str
    extras: list[str]
    lock: str
    name: str | None = None  # images only: the name the overlays use
    dockerfile: str | None = None  # images only
    base: str | None = None  # images only: the Dockerfile's base default must equal it
    torch: str | None = None
    from_neuron_release: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Matrix:
    """``docker/images.toml`` whole."""

    torch_cpu_index: str
    images: dict[str, LockEntry]
    environments: dict[str, LockEntry]


def _strict(where: str, data: object, known: list[str], source: Path) -> dict:
    """``data`` as a table whose every key is in ``known``, else ``MatrixError`` naming the nearest one."""
    if not isinstance(data, dict):
        raise MatrixError(f"{source}: {where or 'the file'} must be a table")
    for key in data:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
            path = f"{where}.{key}" if where else key
            hint = f"did you mean {where + '.' if where else ''}{near[0]}?" if near else f"known: {', '.join(known)}"
            raise MatrixError(f"{source}: {path} is not a setting ({hint})")
    return data


def _entry(where: str, data: object, source: Path) -> LockEntry:
    names = [f.name for f in fields(LockEntry)]
    table = _strict(where, data, names, source)
    required = [f.name for f in fields(LockEntry) if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in table]
    if missing:
        raise MatrixError(f"{source}: {where}.{missing[0]} is missing")
    wrong = [
        key for key, value in table.items() if key in ("extras", "from_neuron_release") and not isinstance(value, list)
    ]
    wrong += [
        key
        for key, value in table.items()
        if key not in ("extras", "from_neuron_release") and not isinstance(value, str)
    ]
    if wrong:
        raise MatrixError(f"{source}: {where}.{wrong[0]} has the wrong type: {table[wrong[0]]!r}")
    return LockEntry(**table)


def read_matrix(path: Path = MATRIX) -> Matrix:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise MatrixError(f"cannot read {path}: {error}") from None
    top = _strict("", data, [f.name for f in fields(Matrix)], path)
    groups = {
        group: {
            name: _entry(f"{group}.{name}", entry, path)
            for name, entry in _strict(group, top.get(group, {}), list(top.get(group, {})), path).items()
        }
        for group in ("images", "environments")
    }
    if not isinstance(top.get("torch_cpu_index"), str):
        raise MatrixError(f"{path}: torch_cpu_index is missing")
    return Matrix(torch_cpu_index=top["torch_cpu_index"], **groups)


def entries(matrix: Path = MATRIX) -> dict[str, LockEntry]:
    read = read_matrix(matrix)
    return read.images | read.environments


def torch_index() -> str | None:
    """PyTorch's CPU index where it answers; None sends pip and uv to the local wheels alone."""
    index = read_matrix().torch_cpu_index
    if reachable(index):
        return index
    print(f"{index} does not answer: torch's CPU build comes from pip's find-links {find_links()}", file=sys.stderr)
    return None


def install(name: str, python: str) -> None:
    """pip-install one lock into ``python``'s environment, every hash checked, nothing resolved beyond it."""
    entry = entries()[name]
    index = torch_index() if entry.torch else None
    command = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--require-hashes"]
    command += ["--no-deps", "-r", str(ROOT / entry.lock)]
    if index:
        command += ["--extra-index-url", index]
    subprocess.run(command, check=True)


def reachable(url: str, timeout_s: float = 3.0) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


@cache
def find_links() -> list[str]:
    """pip's configured find-links (this project's machines keep torch's CPU wheel there); asked of pip once a run."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    links = []
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.endswith(".find-links"):
            links.extend(value.strip("'\"").split())
    return [link for link in dict.fromkeys(links) if Path(link).is_dir()]


def uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(found).is_file():
        raise SystemExit("uv is not installed: make install-dev installs it (the dev extra)")
    return found


def compile_lock(name: str, entry: LockEntry, out: Path, torch_index: str | None) -> None:
    command = [
        uv(),
        "pip",
        "compile",
        str(ROOT / "pyproject.toml"),
        "--generate-hashes",
        "--only-binary",
        ":all:",
        "--no-header",
        "--quiet",
        "--python-version",
        entry.python,
        "--python-platform",
        entry.platform,
        "--output-file",
        str(out),
        *(arg for extra in entry.extras for arg in ("--extra", extra)),
    ]
    with tempfile.TemporaryDirectory() as scratch:
        # A pinned torch build, or none: the Neuron release's packages come from its own repository.
        overrides = [f"{package} ; sys_platform == 'never'" for package in entry.from_neuron_release]
        if entry.torch:
            overrides.append(f"torch=={entry.torch}")
        if overrides:
            override = Path(scratch) / "overrides.txt"
            override.write_text("\n".join(overrides) + "\n")
            command += ["--override", str(override)]
        if entry.torch:
            if torch_index:
                command += ["--extra-index-url", torch_index, "--index-strategy", "unsafe-best-match"]
            for link in find_links():
                command += ["--find-links", link]
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, env=os.environ | {"NO_COLOR": "1"}
        )
    if result.returncode != 0:
        raise SystemExit(
            f"{name}: does not resolve for Python {entry.python} on {entry.platform}: {result.stderr.strip()}"
        )
    # The project itself is installed from its source, never from a lock; find-links paths differ between machines.
    lines = [
        re.sub(r"--override \S+", "--override docker/images.toml", line)
        for line in out.read_text().splitlines(keepends=True)
        if not line.startswith("--find-links")
    ]
    out.write_text(
        HEADER
        + f"# {name}: Python {entry.python}, {entry.platform}, extras {entry.extras or 'none'}\n"
        + "".join(lines)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("write", "check", "install"))
    parser.add_argument("names", nargs="*", help="entries of docker/images.toml (default: all; install: one)")
    parser.add_argument("--python", default=sys.executable, help="install: the environment's python")
    args = parser.parse_args(argv)
    if args.action == "install":
        if len(args.names) != 1:
            parser.error("install takes one entry of docker/images.toml")
        install(args.names[0], args.python)
        return 0
    index = torch_index()
    failed = []
    for name, entry in entries().items():
        if args.names and name not in args.names:
            continue
        committed = ROOT / entry.lock
        if args.action == "write":
            committed.parent.mkdir(parents=True, exist_ok=True)
            compile_lock(name, entry, committed, index)
            print(f"wrote {entry.lock}")
            continue
        with tempfile.TemporaryDirectory() as scratch:
            fresh = Path(scratch) / "fresh.lock"
            if committed.is_file():  # uv keeps a lock's versions while they still satisfy pyproject.toml
                shutil.copy(committed, fresh)
            compile_lock(name, entry, fresh, index)
            new = fresh.read_text()
        old = committed.read_text() if committed.is_file() else ""
        if new != old:
            diff = "".join(
                difflib.unified_diff(old.splitlines(True), new.splitlines(True), entry.lock, "resolved", n=0)
            )
            failed.append(f"{entry.lock} is not what pyproject.toml resolves to (make lock):\n{diff[:3000]}")
        else:
            print(f"{entry.lock}: resolves for Python {entry.python} on {entry.platform}, unchanged")
    if failed:
        print("\n".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
