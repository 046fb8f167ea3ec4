"""A one-shot job runs with what start-up loaded frozen out of the collector, and gives the
collector back as it was; the entry point freezes the heap at exit, so the interpreter's last
collections do not walk pyarrow's, Polars' and the drivers' objects (docs/benchmarks-findings.md,
F41)."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap

import pytest

from syncengine.cli.jobs import interruptible
from syncengine.errors import Interrupted


def test_a_job_runs_with_the_start_up_heap_frozen_and_thaws_it_after() -> None:
    assert gc.get_freeze_count() == 0
    seen: list[int] = []

    async def job(stop: asyncio.Event) -> None:
        seen.append(gc.get_freeze_count())

    interruptible(job)
    assert seen and seen[0] > 0
    assert gc.get_freeze_count() == 0


def test_a_failed_job_thaws_the_heap_too() -> None:
    async def job(stop: asyncio.Event) -> None:
        raise asyncio.CancelledError

    with pytest.raises(Interrupted):
        interruptible(job)
    assert gc.get_freeze_count() == 0


def test_the_entry_point_freezes_the_heap_at_exit() -> None:
    # an exit hook registered before main() runs after main's own (last in, first out)
    probe = textwrap.dedent(
        """
        import atexit, gc, sys
        atexit.register(lambda: print("frozen", gc.get_freeze_count() > 0, flush=True))
        from syncengine.cli.main import main
        sys.argv = ["syncengine", "--help"]
        try:
            main()
        except SystemExit:
            pass
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "frozen True" in out
