"""A real PostgreSQL server for the tests and ``make bench-events``: initdb and pg_ctl from Debian's ``postgresql`` package, in a temporary
directory, on a loopback port, stopped when the session ends. As root (CI), the server runs as the ``postgres``
user the package creates, since PostgreSQL refuses to run as root."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from blip_serving.triton.process import free_port

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def postgres_bin() -> Path | None:
    for folder in BIN_DIRS:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def postgres_server() -> Iterator[str]:
    """A running server with an empty database ``blip``; yields its SQLAlchemy URL (psycopg 3). Its folder is a
    fresh one under the system's temporary directory (pytest's are private to root, which the server user is not),
    removed afterwards."""
    folder = postgres_bin()
    if folder is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
    root = Path(tempfile.mkdtemp(prefix="blip-postgres-"))
    data, socket_dir = root / "data", root / "socket"
    socket_dir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(socket_dir, "postgres")
        root.chmod(0o755)
    user = "postgres" if os.geteuid() == 0 else getpass.getuser()
    port = free_port()
    subprocess.run(
        _as_server_user(
            [str(folder / "initdb"), "-D", str(data), "-A", "trust", "-U", user, "-E", "UTF8", "--no-sync"]
        ),
        check=True,
        capture_output=True,
    )
    options = f"-h 127.0.0.1 -p {port} -k {socket_dir} -c fsync=off -c max_connections=200"
    subprocess.run(
        _as_server_user(
            [str(folder / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]
        ),
        check=True,
        capture_output=True,
    )
    try:
        for _ in range(100):
            ready = subprocess.run(
                [str(folder / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
            )
            if ready.returncode == 0:
                break
            time.sleep(0.1)
        subprocess.run(
            [str(folder / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, "blip"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql+psycopg://{user}@127.0.0.1:{port}/blip"
    finally:
        subprocess.run(
            _as_server_user([str(folder / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]), capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)
