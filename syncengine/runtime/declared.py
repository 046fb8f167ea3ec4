"""What a Postgres source declares about its columns beyond their Arrow types, and what the
pipeline does with it.

* ``pg_type`` and ``pg_typedefs``: part of every schema cache key (:func:`declared_types`);
  a source's ``ALTER COLUMN … TYPE varchar(5) → text`` or an enum's new label changes only
  these, and the target must still see the new declaration.
* ``pg_generated``: a column generated at the source, whose values Postgres before 18 never
  sends in the stream. The table is ensured with it (a Postgres target creates it generated);
  the writes never carry it (:func:`without_generated`).
* ``pg_missing``: the value a column added with a default holds in the rows that existed
  (:mod:`syncengine.sources.postgres.missing`); filled in at the target only where nothing
  compares rows with the shadow (:func:`defaults_kept`).
"""

from __future__ import annotations

import logging

import pyarrow as pa

from syncengine.changes import BEFORE_PREFIX, UNSENT_PREFIX, ChangeBatch
from syncengine.config.models import ConflictsConfig
from syncengine.targets.base import TableSpec, Target

log = logging.getLogger("syncengine.pipeline")

#: each column's ``pg_type`` and ``pg_typedefs`` (:func:`declared_types`)
Declared = tuple[tuple[bytes | None, bytes | None], ...]


def generated(spec: TableSpec) -> list[str]:
    """The columns generated at a Postgres source (``pg_generated``, in a snapshot's spec)."""
    return [f.name for f in spec.schema if (f.metadata or {}).get(b"pg_generated")]


def without_generated(
    spec: TableSpec, parts: list[ChangeBatch]
) -> tuple[TableSpec, list[ChangeBatch]]:
    """``spec`` and ``parts`` without the columns generated at the source, once the table is
    ensured (a Postgres target has created them generated). Postgres before 18 never sends
    their values in the stream, so only a snapshot's rows hold them: written, they would go
    stale; hashed, the snapshot's shadow rows and the stream's rows of one key would never
    agree (every later change a conflict nobody made)."""
    names = generated(spec)
    if not names:
        return spec, parts
    spec = TableSpec(
        spec.name, spec.key, pa.schema([f for f in spec.schema if f.name not in names])
    )
    dropped = [[c for c in p.data.column_names if c in names or _named(c) in names] for p in parts]
    return spec, [
        p.replace(p.data.drop_columns(d)) if d else p for p, d in zip(parts, dropped, strict=True)
    ]


def _named(column: str) -> str:
    """The data column a before-image or unsent column is about."""
    return column.removeprefix(BEFORE_PREFIX).removeprefix(UNSENT_PREFIX)


def stale_generated(target: Target, spec: TableSpec) -> None:
    """Warn of columns generated at a Postgres source at a target that cannot generate
    them: they are not written there (:func:`without_generated`). A Postgres target
    generates them itself (``generates_columns``) and names a plain column it finds."""
    names = generated(spec)
    if names and not getattr(target, "generates_columns", False):
        log.warning(
            "%s: %s generated at the source: the stream never carries generated columns "
            "(before Postgres 18), so they are not written here",
            spec.name, ", ".join(names),
        )  # fmt: skip


def declared_types(schema: pa.Schema) -> Declared:
    """Each column's declared Postgres type (``pg_type``) and its user-defined types'
    definitions (``pg_typedefs``: an enum that gained a label), None where it has none."""
    return tuple(
        ((f.metadata or {}).get(b"pg_type"), (f.metadata or {}).get(b"pg_typedefs")) for f in schema
    )


def same_declared(a: pa.Schema, b: pa.Schema) -> bool:
    """Equal schemas whose columns are declared alike: a source's ``ALTER COLUMN … TYPE``
    from ``varchar(5)`` to ``text`` keeps the Arrow types and changes only the declaration."""
    return a == b and declared_types(a) == declared_types(b)


def defaults_kept(
    spec: TableSpec, config: ConflictsConfig, target: Target, warned: set[tuple[str, str]]
) -> TableSpec:
    """``spec`` without the values a column added with a default holds in older rows
    (``pg_missing``) where the table's changes are compared with the shadow (a detecting
    strategy, ``audit``, two-way): the shadow rows, written before the column existed,
    never saw the value, so filling it in at the target would make the next change of
    every older row a conflict nobody made (``local`` would drop it). Those rows keep
    NULL there, as before, with a warning (once per column: ``warned``)."""
    names = [f.name for f in spec.schema if b"pg_missing" in (f.metadata or {})]
    if not names:
        return spec
    from syncengine.conflicts.fence import reads_nothing

    if reads_nothing(config, target) and not getattr(target, "two_way", False):
        return spec
    for name in names:
        if (spec.name, name) not in warned:
            warned.add((spec.name, name))
            log.warning(
                "%s.%s was added at the source with a default; under conflicts strategy %s "
                "the rows that existed hold NULL here (their shadow rows never saw the "
                "value): resnapshot the table to copy it",
                spec.name, name, config.strategy,
            )  # fmt: skip
    fields = [
        f.with_metadata({k: v for k, v in (f.metadata or {}).items() if k != b"pg_missing"})
        if f.name in names
        else f
        for f in spec.schema
    ]
    return TableSpec(spec.name, spec.key, pa.schema(fields, metadata=spec.schema.metadata))
