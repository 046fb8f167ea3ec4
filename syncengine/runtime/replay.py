"""``syncengine deadletters replay``: send set-aside records through the current mapping again.

A dead letter's payload is the original source row (with ``_op``/``_pos``/``_ts``) as JSON.
Replay rebuilds a batch typed like the source table (the schema is taken from the start of a
side-effect-free scan), runs it through the pipeline's mappings, conflict check and target
like any other batch, and marks the letters replayed. Records that fail again are
dead-lettered again with the new reason. Target-stage letters (rows the target refused) are
replayed the same way from their mapped row.

A letter whose key a later change touched is *superseded* (:mod:`.superseded`): replaying
its older change would overwrite the newer value, so it is skipped unless forced. The replayed
batches carry ``meta["replayed"]``: their positions lie below the checkpoint by construction,
so the checkpoint does not fence them (the target's per-key fence rows, where any, still do).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import AsyncGenerator
from datetime import datetime

import pyarrow as pa

from syncengine.changes import OPS, REPLAYED, ChangeBatch
from syncengine.config.models import PipelineConfig
from syncengine.runtime.pipeline import Pipeline
from syncengine.runtime.superseded import typed_column
from syncengine.state import DeadLetter, StateStore

log = logging.getLogger("syncengine.replay")


async def _source_schema(pipeline: Pipeline, table: str) -> tuple[pa.Schema, tuple[str, ...]]:
    scan = pipeline.source.scan(table)
    try:
        batch = await anext(scan)
    finally:
        if isinstance(scan, AsyncGenerator):  # the protocol promises an iterator only
            await scan.aclose()
    return batch.rows.schema, batch.key


def _timestamp(value: object) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None


async def replay(pipeline: Pipeline, letters: list[DeadLetter]) -> tuple[int, int]:
    """Replays ``letters``; returns (replayed, dead-lettered again)."""
    by_table: dict[str, list[DeadLetter]] = defaultdict(list)
    for letter in letters:
        by_table[letter.table].append(letter)
    replayed = failed_again = 0
    for table, group in by_table.items():
        group.sort(key=lambda letter: (letter.position or "", letter.id or 0))
        schema, key = await _source_schema(pipeline, table)
        rows = [json.loads(letter.payload) for letter in group]
        data = pa.table(
            {f.name: typed_column([r.get(f.name) for r in rows], f) for f in schema}, schema=schema
        )
        ops = [r.get("_op") if r.get("_op") in OPS else "c" for r in rows]
        batch = ChangeBatch.build(
            table,
            data,
            ops=ops,
            positions=[
                str(r.get("_pos") or letter.position or "")
                for r, letter in zip(rows, group, strict=True)
            ],
            ts=[_timestamp(r.get("_ts")) for r in rows],
            key=key,
            meta={REPLAYED: True},
        )
        report = await pipeline.process([batch], None)
        pipeline.state.mark_replayed([letter.id for letter in group if letter.id is not None])
        replayed += len(group)
        failed_again += report.dead_letters
        log.info("%s/%s: replayed %d dead letter(s)", pipeline.name, table, len(group))
    return replayed, failed_again


def split_superseded(
    letters: list[DeadLetter], force: bool
) -> tuple[list[DeadLetter], list[DeadLetter]]:
    """(letters to replay, superseded letters skipped); ``force`` replays every letter."""
    if force:
        return letters, []
    keep = [letter for letter in letters if letter.superseded is None]
    return keep, [letter for letter in letters if letter.superseded is not None]


async def replay_letters(
    name: str,
    spec: PipelineConfig,
    state: StateStore,
    ids: set[int] | None = None,
    *,
    force: bool = False,
) -> tuple[int, int]:
    """``deadletters replay`` of one pipeline (only ``ids`` if given) under the pipeline's
    lock, so it never runs beside a daemon or sync of the same pipeline; returns (replayed,
    dead-lettered again), (0, 0) when there was nothing to replay. Superseded letters are
    skipped unless ``force``. The CLI and the console both call this."""
    letters = [letter for letter in state.list_dead_letters(name) if not ids or letter.id in ids]
    letters, _ = split_superseded(letters, force)
    if not letters:
        return 0, 0
    with state.lock(name, "deadletters replay"):
        job = Pipeline(name, spec, state)
        await job.open()
        try:
            return await replay(job, letters)
        finally:
            await job.close()
