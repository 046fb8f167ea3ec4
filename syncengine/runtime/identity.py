"""The target table of an identity mapping, without compiling the mapping.

The snapshot passthrough creates its target tables before any batch exists
(:func:`syncengine.runtime.passthrough.attach`), and a passthrough-only backfill needs nothing
else from the mapping compiler: importing it (sqlglot, the Polars plan builder) and running an
empty batch through the plan cost about 0.1 s of a 2.8 s million-row backfill. For a
mapping that passes every column unchanged, the table the compiler would describe is known
without it: the source columns in order, the source key (or the mapping's ``key``), each
column typed by its ``pg_type`` metadata. The Postgres target picks a column's type from that
metadata first (:func:`syncengine.targets.postgres.types.pg_type_of`), so the table created is
the one the first decoded batch would create; only the Arrow types may differ from the
compiled schema (Polars reads ``string`` back as ``large_string``), which no DDL looks at.

Anything else — computed fields, excluded columns, flattening, a column without ``pg_type``,
a key column the source does not have — returns None, and the caller compiles the mapping
(which also reports the mapping's errors).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from syncengine.changes import is_data_column
from syncengine.config.models import MappingConfig
from syncengine.targets.base import TableSpec


def identity_spec(
    mapping: MappingConfig, schema: pa.Schema, source_key: Sequence[str]
) -> TableSpec | None:
    """The table ``mapping`` makes of source rows of ``schema``, when it is a plain identity
    whose every column carries its ``pg_type``; None when the mapping must be compiled."""
    if mapping.fields is not None or mapping.exclude or mapping.flatten:
        return None
    fields = [f for f in schema if is_data_column(f.name)]
    if not fields or any(b"pg_type" not in (f.metadata or {}) for f in fields):
        return None
    key = tuple(mapping.key or source_key)
    names = {f.name for f in fields}
    if not key or any(k not in names for k in key):
        return None
    return TableSpec(mapping.target_name, key, pa.schema(fields))
