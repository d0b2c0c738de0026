"""Resident memory of a process tree (tritonserver and its Python-backend stubs), read from /proc.

RSS counts a shared page once per process that maps it (libtorch's pages once per stub); PSS divides each
shared page among its processes, so the PSS sum is the tree's real footprint. Both are reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    name: str
    rss_bytes: int
    pss_bytes: int


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children.extend(int(c) for c in text)
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    pids, pending = [], [pid]
    while pending:
        current = pending.pop()
        pids.append(current)
        try:
            pending.extend(_children(current))
        except FileNotFoundError:
            continue
    return pids


def _kilobytes(path: Path, field: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def tree_memory(pid: int) -> list[ProcessMemory]:
    """Memory of each live process of the tree rooted at ``pid``."""
    result = []
    for member in process_tree(pid):
        proc = Path(f"/proc/{member}")
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")
            name = Path(command[0].decode(errors="replace")).name
            if len(command) > 1 and name == "triton_python_backend_stub":
                name = f"stub {Path(command[1].decode(errors='replace')).parent.parent.name}"
            result.append(
                ProcessMemory(
                    member, name, _kilobytes(proc / "status", "VmRSS"), _kilobytes(proc / "smaps_rollup", "Pss")
                )
            )
        except (FileNotFoundError, ProcessLookupError):
            continue
    return result
