"""Throwaway servers for tests, the demo and benchmarks.

* PostgreSQL: ``initdb`` into a temp dir, ``wal_level=logical``, a free port on 127.0.0.1.
  ``initdb`` refuses to run as root, so as root the cluster runs as the ``postgres`` system user
  (created by Debian's ``postgresql`` package).
* MongoDB-compatible: SecantusDB (``secantusd-py``, a test-only dependency) as a one-node
  replica set with change streams. No real ``mongod`` is installable from the registries this
  project can reach; the engine itself uses nothing specific to this server.

``SYNCENGINE_TEST_PG_DSN`` / ``SYNCENGINE_TEST_MONGO_URI`` point everything at external servers.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bin_dir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if not candidates:
        raise RuntimeError(
            "PostgreSQL server binaries not found; run ./scripts/setup (apt-get install postgresql)"
        )
    return Path(candidates[0]).parent


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    if user is None:
        return cmd
    return ["runuser", "-u", user, "--", *cmd]


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster; ``dsn(db)`` connects as the superuser ``postgres``."""

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="syncengine-pg-")))
    settings: dict[str, str] = field(default_factory=dict)
    _user: str | None = None

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def start(self) -> PostgresServer:
        bin_dir = pg_bin_dir()
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user:
            try:
                entry = pwd.getpwnam(self._user)
            except KeyError:
                raise RuntimeError("running as root needs the 'postgres' system user") from None
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        if not self.data_dir.exists():
            subprocess.run(
                _as_user(
                    [
                        str(bin_dir / "initdb"),
                        "-D",
                        str(self.data_dir),
                        "-A",
                        "trust",
                        "-U",
                        "postgres",
                        "--no-sync",
                        "-E",
                        "UTF8",
                    ],
                    self._user,
                ),
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            conf = {
                "wal_level": "logical",
                "track_commit_timestamp": "on",  # two-way timestamp compares commit times
                "max_replication_slots": "64",
                "max_wal_senders": "64",
                "max_connections": "300",
                "listen_addresses": "'127.0.0.1'",
                "unix_socket_directories": f"'{self.root}'",
                "fsync": "off",
                "full_page_writes": "off",
                "shared_buffers": "256MB",
                "max_wal_size": "4GB",
                "wal_sender_timeout": "60s",
                "log_min_messages": "warning",
                **self.settings,
            }
            with open(self.data_dir / "postgresql.conf", "a") as f:
                for key, value in conf.items():
                    f.write(f"{key} = {value}\n")
        self._pg_ctl(
            "start", "-w", "-t", "60", "-o", f"-p {self.port}", "-l", str(self.root / "server.log")
        )
        return self

    def _pg_ctl(self, *args: str) -> None:
        cmd = [str(pg_bin_dir() / "pg_ctl"), "-D", str(self.data_dir), *args]
        subprocess.run(_as_user(cmd, self._user), check=True, stdout=subprocess.DEVNULL)

    def stop(self, mode: str = "fast") -> None:
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            self._pg_ctl("stop", "-m", mode, "-w", "-t", "60")

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


#: the test server's oplog cap (see MongoServer.start)
OPLOG_ENTRIES = 100_000_000


@dataclass
class MongoServer:
    """SecantusDB as a one-node replica set (``replicaSet=secantus``)."""

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="syncengine-mongo-")))
    proc: subprocess.Popen[bytes] | None = None
    #: write the log at every commit: without it a SIGKILL loses the last commits, which the
    #: server's change stream may already have shown (MongoDB's shows only durable ones)
    sync_on_commit: bool = False
    #: ``configureFailPoint`` allowed (a test that makes a command fail as a server would)
    test_commands: bool = False

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self) -> MongoServer:
        exe = shutil.which("secantusd-py") or str(Path(sys.executable).parent / "secantusd-py")
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [
                exe,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--storage-path",
                str(self.root / "data"),
                "--log-level",
                "WARNING",
                "--noop-heartbeat-seconds",
                "1",
                # never prune the oplog while tests run: past its default cap (100,000 entries)
                # every commit prunes a few of the oldest, and the walk to them (over the
                # entries deleted before, not yet cleaned up) grows until one commit holds the
                # server's lock for minutes (F18)
                "--oplog-max-entries",
                str(OPLOG_ENTRIES),
                "--oplog-retention-seconds",
                str(7 * 24 * 3600),
                *(["--sync-on-commit"] if self.sync_on_commit else []),
                *(["--enable-test-commands"] if self.test_commands else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mongo test server exited; see {self.root / 'server.log'}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                if self._ping():
                    return self
            time.sleep(0.1)
        raise RuntimeError("mongo test server did not start within 60 s")

    def _ping(self) -> bool:
        from pymongo import MongoClient

        try:
            with MongoClient(self.uri, serverSelectionTimeoutMS=1000) as client:
                client.admin.command("ping")
            return True
        except Exception:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.destroy()


@contextlib.contextmanager
def running_mongo() -> Iterator[MongoServer]:
    server = MongoServer().start()
    try:
        yield server
    finally:
        server.destroy()
