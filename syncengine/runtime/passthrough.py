"""Which tables' snapshot chunks may skip decoding: the binary COPY passthrough, per table.

Decoding a chunk into Arrow, mapping, resolving and encoding it again is the whole cost of a
backfill, and for a plain copy between Postgres tables none of it changes a byte. A table's
exported-snapshot chunks therefore go source → target as binary COPY
(:mod:`syncengine.sources.postgres.passthrough`, :mod:`syncengine.targets.postgres.passthrough`)
when nothing in between would change a row or needs to see it:

* the source exports raw chunks in a format the target imports (:mod:`syncengine.passthrough`:
  a Postgres source in ``cdc`` mode and a Postgres target, or kinds that declare the same);
* exactly one mapping reads the table, and it is an identity: no ``fields``, no ``exclude``;
  a ``filter`` only when the snapshot pushed it into its chunk queries (the snapshot checks;
  an unpushed filter must see every row);
* its strategy is ``remote`` without ``audit``: an exported snapshot's rows sit exactly where
  the stream starts, so ``remote`` keeps nothing per key for them (docs/conflicts.md, "What each
  strategy keeps"); every other strategy needs each row's hash and base;
* the table has a key (a keyless table's chunks are ctid ranges, read again from the first on
  a resume, and its rows need the target's multiset apply);
* the target table (created here from the source's exact types if missing, as the first batch
  would) has a column of the same built-in type for every source column — the sink checks
  that on both catalogs when the snapshot starts.

Everything else, and any chunk the target refuses, takes the decoded path unchanged.

On a first backfill (no checkpoint yet) a target that can (:class:`KeyAfterLoad`) creates the
passed-through tables without their key index and builds it when every chunk is in
(:func:`finish`; docs/targets.md, "Primary key after the load").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from syncengine.config.models import MappingConfig, PipelineConfig
from syncengine.passthrough import KeyAfterLoad, RawChunkExport, RawChunkImport

if TYPE_CHECKING:
    from syncengine.runtime.pipeline import Pipeline

log = logging.getLogger("syncengine.runner")


def refusal(config: PipelineConfig, mappings: Sequence[MappingConfig]) -> str | None:
    """Why a table read by ``mappings`` cannot pass through (None: it can, type check aside)."""
    if len(mappings) != 1:
        return f"{len(mappings)} mappings read it"
    mapping = mappings[0]
    if mapping.fields is not None:
        return "its mapping computes fields"
    if mapping.exclude:
        return "its mapping excludes fields"
    conflicts = mapping.conflicts or config.conflicts
    if conflicts.strategy != "remote":
        return f"strategy {conflicts.strategy} keeps each row's hash"
    if getattr(conflicts, "audit", False):
        return "strategy remote with audit reads each row back"
    return None


async def attach(pipeline: Pipeline, tables: Sequence[str] | None, first: bool = False) -> None:
    """Give the pipeline's source a sink for its next snapshot's eligible chunks, when the
    source exports raw chunks in a format the target imports (:mod:`syncengine.passthrough`).
    Also without eligible tables: the sink reports chunks committed by an earlier run.
    ``first``: the pipeline's first backfill (no checkpoint): eligible tables the target
    creates here get their key after the load (:func:`finish`)."""
    source = pipeline.source
    if not isinstance(source, RawChunkExport) or (fmt := source.raw_chunk_format()) is None:
        return
    target = pipeline.target
    if not isinstance(target, RawChunkImport) or not target.accepts_raw_chunks(fmt):
        return
    chosen: dict[str, str] = {}
    infos = None
    for table in source.snapshot_tables(tables):
        reason = refusal(pipeline.config, [m for _, m in pipeline.mappings_for(table)])
        if reason is not None:
            log.info("%s: snapshot chunks of %s are decoded: %s", pipeline.name, table, reason)
            continue
        if infos is None:
            infos = {info.name: info for info in await source.tables()}
        info = infos.get(table)
        if info is None or info.schema is None or not info.key:
            # keyless: its chunks are ctid ranges, read again from the first on a resume, and
            # its rows need the target's multiset apply
            log.info("%s: snapshot chunks of %s are decoded: no key", pipeline.name, table)
            continue
        ((_, mapping),) = pipeline.mappings_for(table)
        later = target if first and isinstance(target, KeyAfterLoad) else None
        if later is not None:
            later.keys_after_load(True)
        try:
            spec = await pipeline.target_spec(mapping, info.schema, info.key)
        finally:
            if later is not None:
                later.keys_after_load(False)
        chosen[table] = spec.name
    source.use_chunk_sink(await target.chunk_sink(chosen))


async def finish(pipeline: Pipeline) -> None:
    """Every chunk of the snapshot is in: build the keys :func:`attach` left for after the
    load (before the backfill's checkpoint, so no stream ever sees a table without one)."""
    target = pipeline.target
    if isinstance(target, KeyAfterLoad):
        with pipeline.phases.timing("key"):
            await target.build_keys()
