"""Running the real ``syncengine`` executable against the fixture servers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

EXE = str(Path(sys.executable).parent / "syncengine")
GROUPS = {"deadletters", "conflicts", "checkpoints"}


class CLI:
    """A config file plus the environment its ``${VAR}``s read."""

    def __init__(self, tmp_path: Path, config: str, env: dict[str, str]) -> None:
        self.dir = tmp_path
        self.config = tmp_path / "pipeline.yaml"
        self.config.write_text(config)
        self.env = {**os.environ, **env, "SYNCENGINE_STATE": str(tmp_path / "state.db")}
        self.logs: list[str] = []

    def argv(self, args: tuple[str, ...]) -> list[str]:
        """``syncengine CMD CONFIG …``, or ``syncengine GROUP SUB CONFIG …`` for groups."""
        split = 2 if args and args[0] in GROUPS else 1
        return [EXE, *args[:split], str(self.config), *args[split:]]

    def run(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(args),
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )
        self.logs.append(result.stdout + result.stderr)
        if check and result.returncode != 0:
            raise AssertionError(
                f"syncengine {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n"
                f"{result.stderr}"
            )
        return result

    def start(self, *args: str) -> subprocess.Popen[str]:
        log = open(self.dir / f"daemon-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
        return subprocess.Popen(
            self.argv(args),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
        )

    def stop(
        self, proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 60
    ) -> int:
        proc.send_signal(sig)
        return proc.wait(timeout)

    def daemon_logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.dir.glob("daemon-*.log")))


def machines(
    tmp_path: Path,
    config: str,
    env: dict[str, str],
    state: str,
    names: tuple[str, ...] = ("worker0", "worker1", "elsewhere"),
) -> list[CLI]:
    """A directory per name, as separate machines sharing nothing but ``state`` (a shared
    ``postgresql://`` state store), each with its own copy of ``config``."""
    clis = []
    for name in names:
        (tmp_path / name).mkdir()
        cli = CLI(tmp_path / name, config, env)
        cli.env["SYNCENGINE_STATE"] = state
        clis.append(cli)
    return clis


def wait_for(condition: Callable[[], bool], timeout: float = 30, interval: float = 0.1) -> float:
    """Seconds it took for ``condition`` to hold; AssertionError after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if condition():
                return time.monotonic() - start
        except Exception:  # noqa: BLE001 - not ready yet (table missing, server restarting)
            pass
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def rows(dsn: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def execute(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)
