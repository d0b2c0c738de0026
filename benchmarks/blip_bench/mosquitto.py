"""A real MQTT broker for the tests: Debian's ``mosquitto``, on a loopback port, its persistence in a temporary
directory, so that a subscriber's session (and the QoS 1 messages queued for it) outlives a broker restart, as it
does on a broker run in production."""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from blip_serving.triton.process import free_port, stop_process


class Broker:
    """``start`` and ``stop`` (SIGTERM: it saves its sessions) one mosquitto, always on the same port."""

    def __init__(self, root: Path) -> None:
        binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").is_file() else None)
        if binary is None:
            raise RuntimeError("mosquitto is not installed: apt-get install mosquitto (.ci/run does)")
        self.binary, self.root, self.port = binary, root, free_port()
        self.config = root / "mosquitto.conf"
        self.log = root / "mosquitto.log"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {root}/\n"
            f"user {getpass.getuser()}\n"  # as root it would switch to the mosquitto user, who cannot write here
            f"log_dest file {self.log}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited: {self.process.stderr.read().decode() if self.process.stderr else ''}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"mosquitto not listening on {self.port} in {timeout_s:g}s")

    def pause(self) -> None:
        """SIGSTOP: its connections stay open and nothing is answered, as a broker that hangs."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.resume()  # a paused broker would not act on SIGTERM
            stop_process(self.process, 10)
        self.process = None


@contextmanager
def mosquitto_broker() -> Iterator[Broker]:
    """A running broker, stopped and its folder removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="blip-mosquitto-"))
    broker = Broker(root)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)
