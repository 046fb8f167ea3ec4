"""Target-versus-source checks: row counts and an order-independent checksum.

Postgres tables are summed server-side over a canonical text of each row (numeric at two
decimals, timestamps as epoch seconds, json re-parsed), so a target that picked a different but
equivalent column type still matches, and a wrong value anywhere does not. Documents are
normalised in Python the same way (the check is not the measured part).
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from benchmarks.core import CheckFailed

COLUMNS = ("id", "qty", "name", "price", "created", "active", "attrs", "ref")

CANONICAL = """concat_ws('|', {id}::text, qty::text, name,
    round(price::numeric, 2)::text, extract(epoch FROM created::timestamptz)::bigint::text,
    active::text, attrs::jsonb::text, ref::text)"""

CHECKSUM = "SELECT count(*), coalesce(sum(hashtextextended(" + CANONICAL + ", 0)), 0) FROM {t}"


@dataclass(frozen=True)
class Digest:
    rows: int
    checksum: str

    def describe(self) -> str:
        return f"{self.rows} rows, checksum {self.checksum[:12]}"


def pg_digest(dsn: str, table: str, key: str = "id") -> Digest:
    query = sql.SQL(CHECKSUM).format(t=sql.Identifier(table), id=sql.Identifier(key))
    with psycopg.connect(dsn) as conn:
        rows, total = conn.execute(query).fetchone()  # type: ignore[misc]
    return Digest(int(rows), str(total))


def compare(source: Digest, target: Digest, what: str) -> str:
    """A one-line description when equal; raises :class:`CheckFailed` otherwise."""
    if source != target:
        raise CheckFailed(
            f"{what}: target does not match source: source {source.describe()}, "
            f"target {target.describe()}"
        )
    return f"target = source ({source.describe()})"


def expect_rows(digest: Digest, rows: int, what: str) -> None:
    if digest.rows != rows:
        raise CheckFailed(f"{what}: expected {rows} rows, found {digest.rows}")


# -- pgbench tables ---------------------------------------------------------------------------

# char(n) fillers compared without their padding (a target may store them as text), NULL kept
# apart from ''; history's naive timestamp as epoch seconds with microseconds.
PGBENCH_CANONICAL = {
    "pgbench_accounts": "concat_ws('|', aid, bid, abalance, coalesce(rtrim(filler), '~'))",
    "pgbench_branches": "concat_ws('|', bid, bbalance, coalesce(rtrim(filler), '~'))",
    "pgbench_tellers": "concat_ws('|', tid, bid, tbalance, coalesce(rtrim(filler), '~'))",
    "pgbench_history": "concat_ws('|', tid, bid, aid, delta, extract(epoch FROM mtime)::numeric,"
    " coalesce(rtrim(filler), '~'))",
    "bench_probe": "concat_ws('|', id, seq, extract(epoch FROM ts)::numeric)",
    # the streamed tables of pg_add_table (a probe row and the writers' rows)
    "bench_a": "concat_ws('|', id, seq, extract(epoch FROM ts)::numeric, pad)",
    "bench_b": "concat_ws('|', id, seq, extract(epoch FROM ts)::numeric, pad)",
}


def tables_digest(dsn: str, tables: Iterable[str]) -> dict[str, Digest]:
    """One digest per pgbench (or probe) table, each over its canonical row text."""
    digests = {}
    with psycopg.connect(dsn) as conn:
        for table in tables:
            query = sql.SQL(
                "SELECT count(*), coalesce(sum(hashtextextended({}, 0)), 0) FROM {}"
            ).format(sql.SQL(PGBENCH_CANONICAL[table]), sql.Identifier(table))
            rows, total = conn.execute(query).fetchone()  # type: ignore[misc]
            digests[table] = Digest(int(rows), str(total))
    return digests


def compare_tables(source: dict[str, Digest], target: dict[str, Digest], what: str) -> str:
    """Every table equal, or :class:`CheckFailed` naming the first that is not."""
    for table, digest in source.items():
        compare(digest, target[table], f"{what}, {table}")
    rows = sum(d.rows for d in source.values())
    return f"target = source ({len(source)} tables, {rows} rows, per-table checksums)"


# -- documents -------------------------------------------------------------------------------


def doc_digest(records: Iterable[Mapping[str, Any]]) -> Digest:
    """Digest of rows or documents with the benchmark's eight fields, whatever their types."""
    count = 0
    total = 0
    for record in records:
        count += 1
        text = "|".join(_canonical(field, _field(record, field)) for field in COLUMNS)
        total += int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
    return Digest(count, str(total))


def _field(record: Mapping[str, Any], field: str) -> Any:
    if field == "id":
        return record["id"] if "id" in record else record["_id"]
    if field == "attrs" and "attrs" not in record:
        # flattened: attrs_k, attrs_v, ... columns
        prefix = "attrs_"
        return {k[len(prefix) :]: v for k, v in record.items() if k.startswith(prefix)}
    return record[field]


def _canonical(field: str, value: Any) -> str:
    if field == "price":
        return str(decimal.Decimal(str(_plain(value))).quantize(decimal.Decimal("0.01")))
    if field == "created":
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return str(int(value.timestamp()))
    if field == "attrs":
        if isinstance(value, str | bytes):
            value = json.loads(value)
        return json.dumps(_plain(value), sort_keys=True)
    if field == "ref":
        if hasattr(value, "as_uuid"):
            value = value.as_uuid()
        return str(uuid.UUID(str(value)))
    if field == "active":
        return str(bool(value)).lower()
    return str(_plain(value))


def _plain(value: Any) -> Any:
    """BSON/driver wrappers → plain Python values (Decimal128 → Decimal, nested too)."""
    if hasattr(value, "to_decimal"):
        return value.to_decimal()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def pg_rows(dsn: str, table: str) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))).fetchall()


def mongo_docs(uri: str, database: str, collection: str) -> list[dict[str, Any]]:
    from pymongo import MongoClient

    with MongoClient(uri) as client:
        return list(client[database][collection].find({}, batch_size=10_000))
