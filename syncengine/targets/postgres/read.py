"""One batched read of the current target rows for a set of keys (conflict detection).

A column whose Postgres type can hold a value its Arrow type cannot (``time '24:00'``, ``NaN``
in ``numeric(p,s)``, a multi-dimensional array, a timestamp past 294247 AD: the values a source
batch carries as text, :mod:`syncengine.codecs.pg_carried`) is read as its Postgres text and
restored with the source's own converters; when a row read holds such a value, the column comes
back as that text (``pg_type`` in the field metadata), exactly as a source batch would carry it,
so nothing read is lost or mistaken for another value.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import psycopg
import pyarrow as pa
from psycopg import sql

from syncengine import pgsession
from syncengine.codecs import arrow_numbers, pg_carried, pg_temporal
from syncengine.targets.base import TableSpec

_TEXTUAL = ("text", "character varying", "character")


def _select_item(field: pa.Field, pg_type: str) -> sql.Composable:
    """Read a column so the driver's value fits the spec's Arrow type."""
    ident = sql.SQL("t.{}").format(sql.Identifier(field.name))
    t = field.type
    textual = pg_type.startswith(_TEXTUAL) and not pg_type.endswith("]")
    if pg_carried.held_natively(field, pg_type) is not None:
        return sql.SQL("{}::text").format(ident)  # restored by rows_to_table
    if (pa.types.is_string(t) or pa.types.is_large_string(t)) and not textual:
        if pg_type == "inet":  # its cast to text adds /32 or /128; abbrev is its output form
            return sql.SQL("abbrev({})").format(ident)
        return sql.SQL("{}::text").format(ident)  # uuid, json, enums, text[] … as their text
    if is_date_or_timestamp(t):
        return sql.SQL("{}::text").format(ident)  # infinity and BC have no Python datetime
    if pa.types.is_floating(t) and pg_type not in ("real", "double precision"):
        return sql.SQL("{}::double precision").format(ident)
    return ident


async def read_rows(
    conn: psycopg.AsyncConnection,
    schema: str,
    spec: TableSpec,
    keys: pa.Table,
    target_columns: dict[str, str],
    *,
    lock: bool = False,
) -> pa.Table:
    """The target rows with ``keys``; ``lock``: see :func:`_by_keys`."""
    fields = [f for f in spec.schema if f.name in target_columns]
    out_schema = pa.schema(fields)
    if not keys.num_rows:
        return out_schema.empty_table()
    found = await _by_keys(conn, schema, spec, keys, target_columns, fields, lock=lock)
    return rows_to_table(found, out_schema, target_columns, as_stored=True)


async def read_commit_times(
    conn: psycopg.AsyncConnection,
    schema: str,
    spec: TableSpec,
    keys: pa.Table,
    target_columns: dict[str, str],
    origins: Sequence[str] = (),
    *,
    lock: bool = False,
) -> pa.Table:
    """The key columns, ``_ts``, the commit time of each found row's last write
    (``pg_xact_commit_timestamp_origin(xmin)``: needs ``track_commit_timestamp``), and
    ``_mine``: that write was made under one of the replication ``origins`` (the engine's
    own apply, whose rows' own times are in :mod:`.versions`)."""
    key_fields = [spec.schema.field(k) for k in spec.key]
    times = pa.field("_ts", pa.timestamp("us", tz="UTC"))
    mine = pa.field("_mine", pa.bool_())
    if not keys.num_rows:
        return pa.schema([*key_fields, times, mine]).empty_table()
    commit = sql.SQL("pg_catalog.pg_xact_commit_timestamp_origin(t.xmin)")
    oids = sql.SQL(", ").join(
        sql.SQL("pg_catalog.pg_replication_origin_oid({})").format(sql.Literal(o)) for o in origins
    )
    extra = sql.SQL("({}).timestamp, coalesce(({}).roident IN ({}), false)").format(
        commit, commit, oids if origins else sql.SQL("NULL")
    )
    found = await _by_keys(conn, schema, spec, keys, target_columns, key_fields, extra, lock=lock)
    table = rows_to_table([r[:-2] for r in found], pa.schema(key_fields), target_columns)
    table = table.append_column(times, pa.array([r[-2] for r in found], times.type))
    return table.append_column(mine, pa.array([r[-1] for r in found], mine.type))


async def _by_keys(
    conn: psycopg.AsyncConnection,
    schema: str,
    spec: TableSpec,
    keys: pa.Table,
    target_columns: dict[str, str],
    fields: list[pa.Field],
    extra: sql.Composable | None = None,
    *,
    lock: bool = False,
) -> list[tuple[object, ...]]:
    """``fields`` (and ``extra``) of the rows with ``keys``, as the driver returns them.

    ``lock``: inside a group's transaction (``PostgresTarget.start_group``), the rows found
    are locked ``FOR NO KEY UPDATE`` until its apply commits. A REPEATABLE READ snapshot
    alone makes a later local update fail the apply (a serialization error, retried), but
    not a local ``DELETE``: the apply's ``INSERT … ON CONFLICT`` then finds no live row and
    inserts it again (two-way: while the other direction carries the delete across).
    Locked, a write committed since the snapshot fails the read (retried), and a later one
    waits for the apply and then applies over what it wrote. Locked in key order, so two
    directions into one database lock their common keys in the same order."""
    items = select_list(fields, target_columns)
    if extra is not None:
        items = sql.SQL("{}, {}").format(items, extra)
    query = sql.SQL("SELECT {} FROM {} AS t WHERE {}").format(
        items, sql.Identifier(schema, spec.name), key_match(spec.key, target_columns)
    )
    if lock:
        order = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(k)) for k in spec.key)
        query = sql.SQL("{} ORDER BY {} FOR NO KEY UPDATE OF t").format(query, order)
    cur = await conn.execute(query, key_params(keys, spec.key))
    return await cur.fetchall()


def key_match(key: tuple[str, ...], target_columns: dict[str, str]) -> sql.Composable:
    """``(t.k1, …) IN (…)`` over keys sent as text arrays (:func:`key_params`) and cast to the
    column types on the server: one parameterized statement whatever the key types."""
    unnest = sql.SQL(", ").join(sql.SQL("%b::text[]") for _ in key)
    casts = sql.SQL(", ").join(  # target_columns: catalog types
        sql.SQL("u.{}::{}").format(sql.Identifier(f"k{i}"), sql.SQL(target_columns[k]))
        for i, k in enumerate(key)
    )
    aliases = sql.SQL(", ").join(sql.Identifier(f"k{i}") for i in range(len(key)))
    return sql.SQL("({}) IN (SELECT {} FROM unnest({}) AS u({}))").format(
        sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(k)) for k in key),
        casts,
        unnest,
        aliases,
    )


def key_params(keys: pa.Table, key: tuple[str, ...]) -> list[list[str | None]]:
    return [as_text(keys.column(k)).to_pylist() for k in key]


def as_text(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Values as Postgres input text (Arrow's cast; infinity and BC dates need their own)."""
    if is_date_or_timestamp(values.type) and not pg_temporal.is_ordinary(values):
        return pg_temporal.to_text(values)
    return values.cast(pa.string())


def select_list(fields: list[pa.Field], target_columns: dict[str, str]) -> sql.Composable:
    return sql.SQL(", ").join(_select_item(f, target_columns[f.name]) for f in fields)


def rows_to_table(
    rows: list[tuple[object, ...]],
    schema: pa.Schema,
    target_columns: dict[str, str],
    *,
    as_stored: bool = False,
) -> pa.Table:
    """Driver rows → Arrow, column by column (the driver already parsed the wire values).

    A column read as text (:func:`~syncengine.codecs.pg_carried.held_natively`) stays text,
    ``pg_type`` in its metadata, when a value has no form in its Arrow type; the schema
    returned says which. ``as_stored``: a sub-document's or array's integers that the stored
    values hold as doubles come back as doubles (:func:`_as_stored`; conflict detection)."""
    if not rows:
        return schema.empty_table()
    columns = list(zip(*rows, strict=True))
    arrays, fields = [], []
    for c, f in zip(columns, schema, strict=True):
        carrier = pg_carried.held_natively(f, target_columns[f.name])
        if carrier is not None:
            f, values = pg_carried.restore(pa.array(list(c), pa.string()), f, carrier)
        elif is_date_or_timestamp(f.type):
            text = pa.array(list(c), pa.string())
            values = pg_temporal.from_text(text, f.type, strict=False)
        else:
            if as_stored and arrow_numbers.holds_integers(f.type):
                f = f.with_type(_as_stored(list(c), f.type))
            values = pa.array(list(c), type=f.type)
        arrays.append(values)
        fields.append(f)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, schema.metadata))


def _as_stored(values: list[object], wanted: pa.DataType) -> pa.DataType:
    """``wanted``, with the integers inside it that the stored documents hold as doubles
    made doubles (:mod:`syncengine.codecs.arrow_numbers`; conflict detection then reads the
    batch that way too, ``conflicts.widen.float_read``)."""
    try:
        seen = pa.array(values).type
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed kinds: as the batch types them
        return wanted
    return arrow_numbers.floats_where(wanted, seen)


def is_date_or_timestamp(t: pa.DataType) -> bool:
    """Read as text (:func:`_select_item`) and parsed by :mod:`~syncengine.codecs.pg_temporal`."""
    return bool(pa.types.is_date32(t) or (pa.types.is_timestamp(t) and t.unit == "us"))


async def scan(
    dsn: str, schema: str, spec: TableSpec, target_columns: dict[str, str], chunk: int
) -> AsyncIterator[pa.Table]:
    """Every row, in key order (a keyless table: any order), through a server-side cursor on a
    connection of its own."""
    fields = [f for f in spec.schema if f.name in target_columns]
    async with await scan_connection(dsn) as conn:
        async with conn.cursor(name="syncengine_scan") as cur:
            await cur.execute(scan_query(schema, spec, fields, target_columns))
            while rows := await cur.fetchmany(chunk):
                yield rows_to_table(rows, pa.schema(fields), target_columns)


def scan_query(
    schema: str, spec: TableSpec, fields: list[pa.Field], target_columns: dict[str, str]
) -> sql.Composed:
    """``SELECT`` of ``fields`` (read as :func:`_select_item` says), in key order."""
    order = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(k)) for k in spec.key)
    return sql.SQL("SELECT {} FROM {} AS t{}").format(
        select_list(fields, target_columns),
        sql.Identifier(schema, spec.name),
        sql.SQL(" ORDER BY {}").format(order) if spec.key else sql.SQL(""),
    )


async def scan_connection(dsn: str) -> psycopg.AsyncConnection:
    """A connection of a scan's own, in the text forms the values are read in (UTC, ISO)."""
    conn = await psycopg.AsyncConnection.connect(dsn)
    await pgsession.pin(conn)
    return conn
