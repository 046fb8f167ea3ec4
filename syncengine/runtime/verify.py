"""``syncengine verify``: does the target hold exactly what the mappings make of the source?

For every mapping, the source table is scanned (no side effects) and run through the same
compiled mapping the pipeline uses, so filters, computed fields and renames are accounted for;
the target table is scanned with the same types conflict detection reads. The comparison
itself is :func:`syncengine.runtime.compare.compare_frames`.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from syncengine.changes import is_data_column
from syncengine.codecs import pg_text
from syncengine.codecs.bson_json import is_json
from syncengine.config.models import MappingConfig, PipelineConfig
from syncengine.runtime.compare import TableDiff, compare_frames
from syncengine.runtime.declared import without_generated
from syncengine.runtime.jsonfields import as_json_table, json_fields, known_json_columns
from syncengine.runtime.pipeline import Pipeline, union_schema
from syncengine.state.protocols import StateStore
from syncengine.targets.base import TableSpec


async def verify_named(name: str, spec: PipelineConfig, state: StateStore) -> list[TableDiff]:
    """``syncengine verify`` of one pipeline (the CLI and the console both call this)."""
    job = Pipeline(name, spec, state)
    await job.target.open()
    try:
        return await verify_pipeline(job)
    finally:
        await job.close()


async def verify_pipeline(pipeline: Pipeline) -> list[TableDiff]:
    """One comparison per target table, of what every mapping that writes it makes of its
    source (a table split into it by filters, tables merged into it: :mod:`.sharedtargets`);
    compared per mapping, each one's rows showed the others' as extra in the target."""
    writers: dict[str, list[tuple[int, MappingConfig]]] = {}
    for index, mapping in enumerate(pipeline.mappings):
        writers.setdefault(mapping.target_name, []).append((index, mapping))
    return [await _verify_table(pipeline, mappings) for mappings in writers.values()]


async def _verify_table(pipeline: Pipeline, mappings: list[tuple[int, MappingConfig]]) -> TableDiff:
    compiled = None
    schema: pa.Schema | None = None
    parts: list[pa.Table] = []
    #: each part's own target schema: its Mongo fields' BSON types (jsonfields)
    typed: list[pa.Schema] = []
    for index, mapping in mappings:
        scanned = False
        async for batch in pipeline.source.scan(mapping.source):
            scanned = True
            compiled = pipeline.compile(index, mapping, batch)
            mapped = compiled.apply(batch).batch
            columns = [c for c in mapped.data.column_names if is_data_column(c)]
            parts.append(mapped.data.select(columns))
            typed.append(compiled.target_schema)
            # a document source types each batch on its own: read the target with types that
            # hold every batch's values (int in one batch, double in the next → double)
            schema = (
                compiled.target_schema
                if schema is None
                else union_schema(schema, compiled.target_schema)
            )
        if not scanned:
            raise RuntimeError(
                f"{mapping.source}: the source scan yielded no batch (not even an empty one)"
            )
    assert compiled is not None and schema is not None
    spec = TableSpec(mappings[0][1].target_name, tuple(compiled.key), schema)
    if not getattr(pipeline.target, "generates_columns", False):
        # columns generated at the source are never written to such a target (declared.py)
        spec, _ = without_generated(spec, [])
        parts = [p.select([c for c in p.column_names if c in spec.schema.names]) for p in parts]
    # a typed Mongo field whose column holds JSON is compared as the JSON the stream writes,
    # and the key and JSON columns as the text the target prints (compared as text)
    holding = await known_json_columns(pipeline.target, spec)
    if holding:
        printed = holding & (set(spec.key) | {f.name for f in spec.schema if is_json(f)})
        parts = [
            as_json_table(p, holding, s, tuple(printed)) for p, s in zip(parts, typed, strict=True)
        ]
        spec = json_fields(spec, printed)
    target_parts = [t async for t in pipeline.target.scan(spec)]
    # a Postgres column carried as text in some batches (or read back as text: a target
    # value with no native form) is text in all, on both sides (codecs.pg_text)
    unified = pg_text.unify_text(parts + target_parts)
    frames = [pl.DataFrame(t) for t in unified[: len(parts)]]
    source = pl.concat(frames, how="diagonal_relaxed")
    target = (
        pl.concat([pl.DataFrame(t) for t in unified[len(parts) :]], how="diagonal_relaxed")
        if target_parts
        else pl.DataFrame(schema=source.schema)
    )
    return compare_frames(spec.name, source, target, list(spec.key))
