"""Postgres target pure parts: the type map, CSV encoding for COPY, staging plans, errors."""

from __future__ import annotations

import pyarrow as pa
import pytest
from psycopg import errors as pg_errors

from syncengine.changes import ChangeBatch
from syncengine.errors import FatalError, RetriableError, TargetUnavailable
from syncengine.targets.base import TableSpec, TableWrite
from syncengine.targets.postgres.apply import prepare
from syncengine.targets.postgres.errors import is_record_error, translate
from syncengine.targets.postgres.types import pg_type_of, to_copy_text, to_csv


@pytest.mark.parametrize(
    ("type_", "expected"),
    [
        (pa.int32(), "integer"),
        (pa.int64(), "bigint"),
        (pa.uint64(), "numeric(20,0)"),
        (pa.float32(), "real"),
        (pa.string(), "text"),
        (pa.large_string(), "text"),
        (pa.binary(), "bytea"),
        (pa.bool_(), "boolean"),
        (pa.date32(), "date"),
        (pa.timestamp("us", tz="UTC"), "timestamptz"),
        (pa.timestamp("ms"), "timestamp"),
        (pa.decimal128(12, 2), "numeric(12,2)"),
        (pa.list_(pa.int64()), "bigint[]"),
        (pa.list_(pa.struct([("a", pa.int8())])), "jsonb"),
        (pa.struct([("a", pa.int8())]), "jsonb"),
        (pa.duration("us"), "interval"),
    ],
)
def test_arrow_type_map(type_: pa.DataType, expected: str) -> None:
    assert pg_type_of(pa.field("c", type_)) == expected


def test_pg_type_metadata_wins_and_is_validated() -> None:
    exact = pa.field("c", pa.string(), metadata={"pg_type": "character varying(20)[]"})
    assert pg_type_of(exact) == "character varying(20)[]"
    tz = pa.field("c", pa.string(), metadata={"pg_type": "timestamp(3) with time zone"})
    assert pg_type_of(tz) == "timestamp(3) with time zone"
    evil = pa.field("c", pa.string(), metadata={"pg_type": "text); DROP TABLE x; --"})
    with pytest.raises(FatalError, match="unusable pg_type"):
        pg_type_of(evil)


def test_csv_tells_null_from_empty_and_encodes_special_types() -> None:
    table = pa.table(
        {
            "s": pa.array(["", None, 'a"b,c']),
            "b": pa.array([b"\x00\xff", None, b""]),
            "l": pa.array([["x", None], [], None], pa.list_(pa.string())),
            "j": pa.array([{"a": 1}, None, {"a": None}], pa.struct([("a", pa.int64())])),
        }
    )
    text = to_csv(table, {"l": "text[]", "j": "jsonb"}).decode()
    assert text.splitlines() == [
        '"","\\x00ff","{""x"",null}","{""a"":1}"',
        ',,"{}",',
        '"a""b,c","\\x",,"{""a"":null}"',
    ]


def test_copy_text_escapes_tells_null_from_empty_and_matches_csv_values() -> None:
    table = pa.table(
        {
            "n": pa.array([1, None, -3], pa.int64()),
            "s": pa.array(["", None, 'tab\there, new\nline\r and \\. "q"']),
            "b": pa.array([b"\x00\xff", None, b""]),
            "l": pa.array([["x", None], [], None], pa.list_(pa.string())),
            "j": pa.array([{"a": "1\\2"}, None, {"a": None}], pa.struct([("a", pa.string())])),
        }
    )
    types = {"l": "text[]", "j": "jsonb"}
    lines = to_copy_text(table, types).decode().split("\n")
    assert lines[-1] == ""  # every row ends with a newline
    assert lines[:-1] == [
        '1\t\t\\\\x00ff\t{"x",null}\t{"a":"1\\\\\\\\2"}',
        "\\N\t\\N\t\\N\t{}\t\\N",
        '-3\ttab\\there, new\\nline\\r and \\\\. "q"\t\\\\x\t\\N\t{"a":null}',
    ]
    # what COPY reads back (escapes undone) is what the CSV path sends
    unescaped = [
        [None if f == "\\N" else _unescape(f) for f in line.split("\t")] for line in lines[:-1]
    ]
    assert unescaped[2][1] == 'tab\there, new\nline\r and \\. "q"'
    assert unescaped[0][2] == "\\x00ff" and unescaped[2][2] == "\\x"
    assert to_copy_text(table.slice(0, 0), types) == b""
    assert to_copy_text(table.slice(1, 1), types) == b"\\N\t\\N\t\\N\t{}\t\\N\n"


def _unescape(field: str) -> str:
    """COPY text format's four escapes, undone (the test's oracle)."""
    out, chars = [], iter(field)
    for c in chars:
        if c == "\\":
            c = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}[next(chars)]
        out.append(c)
    return "".join(out)


def test_prepare_groups_updates_by_the_columns_they_sent() -> None:
    schema = pa.schema([("id", pa.int64()), ("a", pa.string()), ("b", pa.string())])
    rows = pa.Table.from_pylist([{"id": i, "a": "x", "b": "y"} for i in range(5)], schema=schema)
    batch = ChangeBatch.build(
        "t",
        rows,
        ops=["c", "u", "u", "d", "u"],
        positions=list("12345"),
        key=["id"],
        unsent={"a": [True, True, False, False, False], "b": [False, False, True, False, False]},
    )
    spec = TableSpec("t", ("id",), schema)
    staged = prepare(TableWrite(spec, batch), {"id": "bigint", "a": "text", "b": "text"})
    pats = staged.rows.column("__pat").to_pylist()
    # insert and the fully sent update share pattern 0; the delete has none
    assert pats[0] == pats[4] == 0 and pats[3] == -1
    assert staged.patterns[0] == ["id", "a", "b"]
    assert staged.patterns[pats[1]] == ["id", "b"]
    assert staged.patterns[pats[2]] == ["id", "a"]
    assert not staged.truncate


def test_prepare_drops_columns_the_target_lacks_and_notes_truncate() -> None:
    schema = pa.schema([("id", pa.int64()), ("gone", pa.string())])
    rows = pa.Table.from_pylist([{"id": None, "gone": None}, {"id": 1, "gone": "x"}], schema=schema)
    batch = ChangeBatch.build("t", rows, ops=["t", "c"], positions=["1", "2"], key=["id"])
    staged = prepare(TableWrite(TableSpec("t", ("id",), schema), batch), {"id": "bigint"})
    assert staged.truncate
    assert staged.rows.column_names == ["__row", "__op", "__pat", "id"]
    assert staged.rows.num_rows == 1


def test_errors_map_to_retry_policy() -> None:
    def err(state: str) -> Exception:
        return pg_errors.lookup(state)("boom password=hunter2")

    assert isinstance(translate(err("40001"), "x"), RetriableError)
    assert isinstance(translate(err("57P01"), "x"), TargetUnavailable)
    assert isinstance(translate(err("42501"), "x"), FatalError)
    assert "hunter2" not in str(translate(err("42501"), "x"))
    assert is_record_error(err("23505")) and is_record_error(err("22003"))
    assert not is_record_error(err("40001"))
