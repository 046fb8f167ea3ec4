"""Arrow values → the text Postgres reads them back from, column-wise.

A Postgres source sends a column in its text form for a batch holding a value the column's
Arrow type cannot hold (``time '24:00'``, a multi-dimensional array, ``NaN`` in
``numeric(p,s)``, see :mod:`syncengine.sources.postgres.columns`). When such a batch meets
batches of the same table that carry the column natively (one group, one target write), the
native values are turned into that same text so the batches concatenate, losslessly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from syncengine.codecs import pg_temporal

if TYPE_CHECKING:
    import polars as pl
else:
    from syncengine.deferred import polars as pl


def _series(values: pa.Array | pa.ChunkedArray) -> pl.Series:
    series = pl.from_arrow(values)
    assert isinstance(series, pl.Series)
    return series


def is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def convertible(t: pa.DataType) -> bool:
    """Whether :func:`as_text` knows this type."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return convertible(t.value_type) and not pa.types.is_list(t.value_type)
    return (
        pa.types.is_date(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_time(t)
        or pa.types.is_decimal(t)
        or pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or is_text(t)
    )


def as_text(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Postgres input text of each value (nulls stay null)."""
    t = values.type
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        return pg_temporal.to_text(values)
    if pa.types.is_boolean(t):
        return (
            _series(values)
            .replace_strict({True: "t", False: "f"}, return_dtype=pl.String)
            .to_arrow()
        )
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _array_literal(values)
    if pa.types.is_time(t):  # as Postgres prints it: no trailing zeros in the fraction
        text = _series(values.cast(pa.string()))
        text = text.str.replace(r"(\.\d*[1-9])0+$", "${1}").str.replace(r"\.0+$", "")
        return text.to_arrow().cast(pa.string())
    return values.cast(pa.string())


def _array_literal(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``[1, None]`` → ``{1,NULL}``; text elements quoted (``"a \\"b\\""``)."""
    element = values.type.value_type
    items = _series(values)
    if pa.types.is_string(element) or pa.types.is_large_string(element):
        escaped = (
            pl.lit('"')
            + pl.element()
            .str.replace_all("\\", "\\\\", literal=True)
            .str.replace_all('"', '\\"', literal=True)
            + pl.lit('"')
        )
        # quoted only where Postgres quotes: empty, special characters, the word NULL
        needs = (
            (pl.element() == "")
            | pl.element().str.contains(r'[{}",\\\s]')
            | (pl.element().str.to_lowercase() == "null")
        )
        quoted = pl.when(needs).then(escaped).otherwise(pl.element())
    elif pa.types.is_boolean(element):
        quoted = pl.when(pl.element()).then(pl.lit("t")).otherwise(pl.lit("f"))
    else:
        quoted = pl.element().cast(pl.String)
    words = items.list.eval(pl.when(pl.element().is_null()).then(pl.lit("NULL")).otherwise(quoted))
    text = pl.lit("{") + pl.col("w").list.join(",") + pl.lit("}")
    out = pl.DataFrame({"w": words}).select(text.alias("w")).to_series()
    return out.to_arrow().cast(pa.string())


def unify_text(tables: list[pa.Table]) -> list[pa.Table]:
    """Tables of one target table: a column that one of them holds as text and another
    natively becomes text in all (the native values as Postgres text); the rest unchanged."""
    types: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for f in table.schema:
            types.setdefault(f.name, set()).add(f.type)
    textual = {
        name
        for name, seen in types.items()
        if len(seen) > 1 and any(is_text(t) for t in seen) and all(convertible(t) for t in seen)
    }
    if not textual:
        return tables
    out = []
    for table in tables:
        for i, f in enumerate(table.schema):
            if f.name in textual and not is_text(f.type):
                table = table.set_column(i, f.with_type(pa.string()), as_text(table.column(i)))
        out.append(table)
    return out
