"""Target tables that several mappings of a pipeline write: other source tables merged into
one (``orders_2023`` and ``orders_2024`` into ``orders``), or one source table split into it by
filters (a mapping per kind of row, each with its own fields).

A row belongs in such a table while *some* mapping writing it keeps the row. Two places judged
by one mapping alone and deleted the others' rows: a row leaving one mapping's filter was
deleted although a sibling mapping of the same source table kept it (the sibling's upsert and
this delete met in one group, and the delete could win), and a re-snapshot's sweep deleted
every row whose key the re-copied table lacked, other tables' rows included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from syncengine.config.models import MappingConfig
    from syncengine.runtime.pipeline import Pipeline


def cowriters(
    pipeline: Pipeline, mapping: MappingConfig, index: int
) -> list[tuple[str, int, MappingConfig]]:
    """(source table, index, mapping) of the pipeline's other mappings that write
    ``mapping``'s target table."""
    key = pipeline.config.source_key
    return [
        (key(other.source), i, other)
        for i, other in enumerate(pipeline.mappings)
        if i != index and other.target_name == mapping.target_name
    ]


def cowriter_tables(pipeline: Pipeline, table: str) -> set[str]:
    """The other source tables whose mappings write a target table of ``table``'s."""
    return {
        other
        for index, mapping in pipeline.mappings_for(table)
        for other, _, _ in cowriters(pipeline, mapping, index)
    } - {pipeline.config.source_key(table)}


def kept_elsewhere(
    pipeline: Pipeline, index: int, mapping: MappingConfig
) -> tuple[tuple[str | None, str], ...]:
    """(filter, dialect) of the other mappings of ``mapping``'s source table into its target
    table (None: one without a filter), for ``compile_mapping``."""
    if mapping.filter is None:
        return ()  # it deletes no row on leaving a filter
    table = pipeline.config.source_key(mapping.source)
    return tuple(
        (other.filter, other.dialect)
        for source, _, other in cowriters(pipeline, mapping, index)
        if source == table
    )
