"""The target keys of a source table's rows, read from the columns they come from alone.

A table sweep (:mod:`syncengine.runtime.sweep`) needs, of every source row a mapping keeps,
only its target key. Reading every column of a million-row table again, and mapping them all,
cost seconds of a daemon's time while other tables streamed (``pg_add_table``). Deletes already
carry only the key, so a mapping's target key is computed from its source key columns alone
(:mod:`syncengine.mappings.keys`); with the columns its ``filter`` reads, those are all the
sweep needs. The mapping is cut down to its key fields and applied to batches of those
columns: the same expressions, so the same key values, as the whole mapping gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from syncengine.config.models import MappingConfig
from syncengine.errors import SyncEngineError

if TYPE_CHECKING:
    from syncengine.changes import ChangeBatch
    from syncengine.mappings.plan import CompiledMapping
    from syncengine.runtime.pipeline import Pipeline


@dataclass(frozen=True)
class KeyReading:
    """How to get a mapping's target keys from a narrowed read of its source table."""

    pipeline: str
    index: int
    #: the whole mapping compiled for the table's schema: its target key and target schema
    compiled: CompiledMapping
    #: the mapping with its key fields alone (same key, same filter)
    keyed: MappingConfig
    #: the source columns to read: the source key and what the filter reads
    columns: tuple[str, ...]

    def keys(self, batch: ChangeBatch) -> pa.Table:
        """The target keys, as text, of the rows of ``batch`` (of :attr:`columns`) the mapping
        keeps. Runs in a thread: it is Polars and Arrow work."""
        from syncengine.mappings import compile_mapping

        plan = compile_mapping(
            self.pipeline, self.keyed, batch.rows.schema, tuple(batch.key), index=self.index
        )
        return text_keys(plan.apply(batch).batch.data, self.compiled.key)


async def key_reading(
    pipeline: Pipeline, table: str, index: int, mapping: MappingConfig
) -> KeyReading | None:
    """The narrowed read of ``table`` for ``mapping``, or None when the source does not say
    the table's schema before reading it (documents) or the cut-down mapping would not give
    the whole mapping's key (then every column is read, as before)."""
    from syncengine.mappings import compile_mapping

    infos = {info.name: info for info in await pipeline.source.tables()}
    info = infos.get(table)
    if info is None or info.schema is None:
        return None
    try:
        whole = compile_mapping(pipeline.name, mapping, info.schema, info.key, index=index)
        wanted = set(whole.source_key)
        if whole.filter is not None:
            wanted |= {dep.split(".", 1)[0] for dep in whole.filter.deps}
        columns = tuple(f.name for f in info.schema if f.name in wanted)
        fields = mapping.fields
        if fields:
            fields = {k: v for k, v in fields.items() if k in whole.key}
        keyed = mapping.model_copy(update={"fields": fields, "reverse": None})
        narrow = pa.schema([info.schema.field(c) for c in columns])
        cut = compile_mapping(pipeline.name, keyed, narrow, info.key, index=index)
    except SyncEngineError:
        return None
    if cut.key != whole.key or not whole.key:
        return None
    return KeyReading(pipeline.name, index, whole, keyed, columns)


def text_keys(data: pa.Table, key: list[str] | tuple[str, ...]) -> pa.Table:
    """The key columns of ``data`` as strings (the sweep compares keys as text)."""
    return pa.table({k: pc.cast(data.column(k), pa.string()) for k in key})
