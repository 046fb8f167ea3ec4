"""The applier's ``want()``: an idle applier gets committed rows at the next commit."""

from __future__ import annotations

import asyncio
import time

from syncengine.config.models import BatchConfig
from syncengine.sources.base import resume_position
from syncengine.sources.postgres import streaming
from syncengine.sources.postgres.decodespawn import ENV
from tests.integration.pgsource.pgsource_helpers import (
    drain,
    execute,
    first_rows,
    make_source,
)


def test_an_idle_applier_gets_the_rows_at_the_next_commit(pg_dsn, monkeypatch):
    """``want()`` (the applier waits for rows): the stream hands over what it holds at the
    next commit, without waiting for ``max_wait`` or for the stream to go quiet (both made
    60 s here, so only the request can end the wait)."""
    monkeypatch.setenv(ENV, "inline")  # QUIET below is patched in this process only
    monkeypatch.setattr(streaming, "QUIET", 60.0)

    async def scenario():
        execute(pg_dsn, "CREATE TABLE wanted (id int PRIMARY KEY)")
        source = make_source(pg_dsn, ["wanted"])
        source.batch = BatchConfig(max_rows=1000, max_wait=60.0)
        await source.open()
        _, start = await drain(source, None)
        stream = source.stream(start)

        first = asyncio.ensure_future(first_rows(stream))
        await asyncio.sleep(0.5)  # the stream is up and idle
        execute(pg_dsn, "INSERT INTO wanted VALUES (1)")
        await asyncio.sleep(1.5)
        held = not first.done()  # committed, but neither max_wait nor the quiet flush came
        source.want()
        started = time.monotonic()
        execute(pg_dsn, "INSERT INTO wanted VALUES (2)")
        batch = await asyncio.wait_for(first, 30)
        waited = time.monotonic() - started
        await stream.aclose()
        await source.close()
        return held, batch, waited

    held, batch, waited = asyncio.run(scenario())
    assert held
    assert batch.data.column("id").to_pylist() == [1, 2]
    assert resume_position(batch) is not None
    assert waited < 10, f"took {waited:.2f} s after want()"
