"""After a table's re-snapshot: delete from the target the keys the source no longer has.

A re-snapshot upserts every row the source has; a key deleted at the source while the table was
not captured (removed from ``tables:``, or a target edited by hand) would otherwise stay. The
sweep notes a position P up to which every source commit is visible to a read that starts
after it (Postgres: a settled visibility horizon, :class:`~syncengine.sources.postgres.
watermarks.VisibilityHorizon`; Mongo: the cluster time noted before reading), reads the source
table through the mappings (the target's key values) and the target's keys, and deletes at P
each target key the source read lacks. The position fence makes that safe under a running
stream: a key inserted after P and already applied has a fence above P (the table's stream
changes fence densely until the sweep is done), so the delete is dropped; one not applied yet
comes after the delete, at its later position. P may lie below the stored checkpoint, so the
deletes are marked replayed (fenced per key, not by the checkpoint).

Skipped (logged) when the re-snapshot had ``--where`` (rows outside it are not the request's
business), when the source cannot vouch for P, or when the target cannot list its rows.
Key values are compared as text (both sides' key columns cast to strings).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from syncengine.changes import OP_DELETE, REPLAYED, ChangeBatch, is_data_column
from syncengine.runtime.jsonfields import as_json_table, json_fields, known_json_columns
from syncengine.runtime.keyread import key_reading, text_keys
from syncengine.runtime.pipeline import union_schema
from syncengine.runtime.sharedtargets import cowriters
from syncengine.targets.base import TableSpec

if TYPE_CHECKING:
    from syncengine.config.models import MappingConfig
    from syncengine.mappings.plan import CompiledMapping
    from syncengine.runtime.pipeline import Pipeline

log = logging.getLogger("syncengine.sweep")


#: deletes found by :func:`find_deleted`, per mapping: what :func:`apply_deletes` applies
Found = list[tuple["MappingConfig", TableSpec, ChangeBatch]]
#: a source's target keys, per scan batch: as text (schema None) or as mapped, with the
#: batch's target schema
SourceKeys = list[tuple[pa.Table, pa.Schema | None]]


async def sweep_deleted(pipeline: Pipeline, table: str, required: bool = False) -> int:
    """Delete the target rows of ``table`` whose key the source no longer has; how many."""
    return await apply_deletes(pipeline, table, await find_deleted(pipeline, table, required))


async def find_deleted(pipeline: Pipeline, table: str, required: bool = False) -> Found:
    """The deletes of the target rows of ``table`` whose key the source no longer has, read and
    compared without writing anything: a daemon runs this beside its stream (the reads of a
    million-row table took seconds, during which no stream group was applied when the applier
    ran them), then hands :func:`apply_deletes` to the applier. ``required``: a source that
    can place a sweep but not now raises a retriable error instead of skipping it."""
    settle = getattr(pipeline.source, "visible_position", None)
    if settle is None:
        return []
    position = await (settle(required=True) if required else settle())
    if position is None:
        log.warning("%s: %s: no settled position, deleted keys are not swept", pipeline.name, table)
        return []
    found: Found = []
    done: set[str] = set()
    for index, mapping in pipeline.mappings_for(table):
        if mapping.target_name in done:
            continue
        done.add(mapping.target_name)
        spec, keys = await _source_keys(pipeline, table, index, mapping)
        if spec is None:
            continue
        # every row the target table should hold: what each mapping writing it keeps
        # (:mod:`.sharedtargets`)
        for other_table, other_index, other in cowriters(pipeline, mapping, index):
            _, more = await _source_keys(pipeline, other_table, other_index, other)
            keys.extend(more)
        holding = await known_json_columns(pipeline.target, spec)
        # keys the target holds as JSON: compared (and deleted) as the text it prints
        spec = json_fields(spec, holding & set(spec.key))
        present = await asyncio.to_thread(_present, keys, spec.key, holding)
        # the target's key columns only: its whole rows took seconds to read into Arrow
        key_spec = TableSpec(
            spec.name, spec.key, pa.schema([spec.schema.field(k) for k in spec.key])
        )
        async for part in pipeline.target.scan(key_spec):
            if not part.num_rows:
                continue
            gone = await asyncio.to_thread(_absent, part, spec, present)
            if gone.num_rows:
                found.append((mapping, spec, _deletes(spec, gone, position)))
    return found


def _present(keys: SourceKeys, key: tuple[str, ...], holding: frozenset[str]) -> pa.Table:
    """The source's target keys as text (:func:`.keyread.text_keys`); a typed Mongo key
    whose column holds JSON as that JSON (:mod:`.jsonfields`): compared as the text of the
    typed value, every row of such a key was "gone at the source" and deleted."""
    texts = [
        text_keys(table if schema is None else as_json_table(table, holding, schema, key), key)
        for table, schema in keys
        if table.num_rows
    ]
    return (
        pa.concat_tables(texts) if texts else pa.table({k: pa.array([], pa.string()) for k in key})
    )


async def _source_keys(
    pipeline: Pipeline, table: str, index: int, mapping: MappingConfig
) -> tuple[TableSpec | None, SourceKeys]:
    """The target table ``mapping`` writes (its schema as the source's rows map to now) and
    the target keys of the source rows the mapping keeps: as text, or as mapped with the
    batch's target schema (a document source's: see :func:`_present`).

    Only the columns the key and the filter read are read (:func:`.keyread.key_reading`):
    the sweep of a million-row table read every column again, and parsed it on the event
    loop. Mapping and casting run in a thread (Polars and Arrow let go of the GIL), so the
    daemon's applier keeps applying stream groups meanwhile."""
    reading = await key_reading(pipeline, table, index, mapping)
    compiled: CompiledMapping | None = None if reading is None else reading.compiled
    schema = None if compiled is None else compiled.target_schema
    keys: SourceKeys = []
    # (a source is asked for some columns only when it told the schema: Source.scan)
    source = pipeline.source
    scan = source.scan(table) if reading is None else source.scan(table, reading.columns)
    async for batch in scan:
        if reading is not None:
            keys.append((await asyncio.to_thread(reading.keys, batch), None))
            continue
        compiled = pipeline.compile(index, mapping, batch)
        target_schema = compiled.target_schema
        keys.append((await asyncio.to_thread(_mapped_keys, compiled, batch), target_schema))
        schema = target_schema if schema is None else union_schema(schema, target_schema)
    if compiled is None or schema is None or not compiled.key:
        return None, []
    return TableSpec(mapping.target_name, tuple(compiled.key), schema), keys


async def apply_deletes(pipeline: Pipeline, table: str, found: Found) -> int:
    """Apply what :func:`find_deleted` found (fenced per key: a key the stream brought back
    after the sweep's position keeps its row); how many rows went."""
    deleted = 0
    for mapping, spec, batch in found:
        deleted += await pipeline.apply_mapped(mapping, spec, batch)
    if deleted:
        log.info(
            "%s: %s: %d target rows deleted (gone at the source)", pipeline.name, table, deleted
        )
    return deleted


def _mapped_keys(compiled: CompiledMapping, batch: ChangeBatch) -> pa.Table:
    return compiled.apply(batch).batch.data.select(list(compiled.key))


def _absent(part: pa.Table, spec: TableSpec, present: pa.Table | None) -> pa.Table:
    """The rows of ``part`` (target rows) whose key is not in ``present``."""
    key = list(spec.key)
    rows = text_keys(part, key).append_column("__row", pa.array(range(part.num_rows)))
    if present is None or not present.num_rows:
        return part.select(key)
    missing = rows.join(present, keys=key, join_type="left anti")
    return part.select(key).take(missing.column("__row"))


def _deletes(spec: TableSpec, keys: pa.Table, position: str) -> ChangeBatch:
    """Delete changes of ``keys`` at ``position``, in the target's columns (the others unsent)."""
    n = keys.num_rows
    columns: dict[str, pa.Array] = {}
    unsent: dict[str, pa.Array] = {}
    for field in spec.schema:
        if not is_data_column(field.name):
            continue
        if field.name in spec.key:
            columns[field.name] = pc.cast(keys.column(field.name), field.type)
        else:
            columns[field.name] = pa.nulls(n, field.type)
            unsent[field.name] = pa.array([True] * n)
    return ChangeBatch.build(
        spec.name,
        pa.table(columns),
        ops=pa.array([OP_DELETE] * n, pa.string()),
        positions=pa.array([position] * n, pa.string()),
        key=spec.key,
        unsent=unsent,
        meta={"snapshot": True, "deletes": True, REPLAYED: True},
    )
