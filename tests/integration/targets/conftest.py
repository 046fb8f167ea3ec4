"""One harness per target kind, so the conformance suite is written once.

Each harness makes fresh target instances over the same storage (a new instance is what a
restarted process would have) and reads the target's state *independently of the target's own
read code*: Postgres and Mongo through their drivers, Parquet by replaying the files as a log
with a per-row oracle. For the Parquet target "the state" is that replayed log.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bson import Binary, ObjectId
from pymongo import MongoClient

from syncengine.changes import UNSENT_PREFIX, ChangeBatch
from syncengine.config.models import MongoTargetConfig, ParquetTargetConfig, PostgresTargetConfig
from syncengine.state.sqlite import SQLiteStateStore
from syncengine.targets.base import TableSpec, Target
from syncengine.targets.mongo import MongoTarget
from syncengine.targets.parquet import ParquetTarget
from syncengine.targets.postgres import PostgresTarget

KINDS = ["postgres", "mongo", "mongo_plain", "parquet"]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def make_batch(
    table: str,
    key: tuple[str, ...],
    rows: list[dict[str, Any]],
    schema: pa.Schema,
    ops: list[str],
    positions: list[str],
    unsent: dict[str, list[bool]] | None = None,
    day: int = 1,
) -> ChangeBatch:
    from datetime import UTC, datetime

    data = pa.Table.from_pylist(rows, schema=schema)
    ts = [datetime(2026, 11, day, 12, 0, i % 60, tzinfo=UTC) for i in range(len(rows))]
    return ChangeBatch.build(
        table, data, ops=ops, positions=positions, ts=ts, key=key, unsent=unsent
    )


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, Binary) and value.subtype == 4:
        return str(value.as_uuid())
    if isinstance(value, Decimal):
        return float(value)
    return value


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in doc.items():
        if isinstance(value, dict) and name != "_id":
            out.update(_flatten(value, f"{prefix}{name}."))
        else:
            out[prefix + name] = _plain(value)
    return out


@dataclass
class Harness:
    kind: str
    make_target: Callable[[], Target]
    read_state: Callable[[TableSpec], dict[tuple[Any, ...], dict[str, Any]]]
    root: Path | None = None

    @asynccontextmanager
    async def target(self) -> AsyncIterator[Target]:
        """A fresh, opened target instance (what a restarted process would get)."""
        target = self.make_target()
        await target.open()
        try:
            yield target
        finally:
            await target.close()

    def state(self, spec: TableSpec) -> dict[tuple[Any, ...], dict[str, Any]]:
        return self.read_state(spec)


def _postgres_state(dsn: str) -> Callable[[TableSpec], dict]:
    def read(spec: TableSpec) -> dict:
        with psycopg.connect(dsn) as conn:
            exists = conn.execute("SELECT to_regclass(%s)", (f'public."{spec.name}"',)).fetchone()
            if exists[0] is None:
                return {}
            cur = conn.execute(
                psycopg.sql.SQL("SELECT * FROM {}").format(psycopg.sql.Identifier(spec.name))
            )
            names = [d.name for d in cur.description]
            rows = [dict(zip(names, map(_plain, r), strict=True)) for r in cur.fetchall()]
        return {tuple(r[k] for k in spec.key): r for r in rows}

    return read


def _mongo_state(uri: str, db: str) -> Callable[[TableSpec], dict]:
    def read(spec: TableSpec) -> dict:
        with MongoClient(uri, tz_aware=True) as client:
            docs = list(client[db][spec.name].find({}))
        rows = []
        for doc in docs:
            flat = _flatten(doc)
            if spec.key != ("_id",):
                flat.pop("_id", None)
            rows.append(flat)
        return {tuple(r.get(k) for k in spec.key): r for r in rows}

    return read


def replay_oracle(root: Path, spec: TableSpec) -> dict:
    """Per-row replay of the Parquet log: the test's independent idea of the target state."""
    files = sorted((root / spec.name).glob("date=*/*.parquet"))
    changes: list[tuple[str, int, dict[str, Any]]] = []
    for number, path in enumerate(files):
        for row in pq.read_table(path, partitioning=None).to_pylist():
            changes.append((row["_pos"], number, row))
    changes.sort(key=lambda c: (c[0], c[1]))
    state: dict[tuple[Any, ...], dict[str, Any]] = {}
    for _pos, _n, row in changes:
        op = row["_op"]
        if op == "t":
            state.clear()
            continue
        key = tuple(row[k] for k in spec.key)
        if op == "d":
            state.pop(key, None)
            continue
        sent = {
            k: v
            for k, v in row.items()
            if not k.startswith("_") or k == "_id"
            if not row.get(UNSENT_PREFIX + k)
        }
        sent = {k: v for k, v in sent.items() if k not in ("_op", "_pos", "_ts", "_txid")}
        if op in ("c", "r"):
            state[key] = sent
        else:
            state.setdefault(key, {}).update(sent)
    return {k: {n: _plain(v) for n, v in r.items()} for k, r in state.items()}


def log_positions(root: Path, table: str) -> list[str]:
    files = sorted((root / table).glob("date=*/*.parquet"))
    return [
        p for f in files for p in pq.read_table(f, partitioning=None).column("_pos").to_pylist()
    ]


@pytest.fixture(params=KINDS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    kind = request.param
    state = SQLiteStateStore(tmp_path / "state.db")
    if kind == "postgres":
        dsn = request.getfixturevalue("pg_target_dsn")
        config = PostgresTargetConfig(type="postgres", dsn=dsn)
        h = Harness(kind, lambda: PostgresTarget("conf", config, state), _postgres_state(dsn))
    elif kind in ("mongo", "mongo_plain"):
        uri, db = request.getfixturevalue("mongo_uri"), request.getfixturevalue("mongo_db")
        config = MongoTargetConfig(type="mongo", uri=uri, database=db)
        txn = None if kind == "mongo" else False
        h = Harness(
            kind,
            lambda: MongoTarget("conf", config, state, transactions=txn),
            _mongo_state(uri, db),
        )
    else:
        root = tmp_path / "lake"
        config = ParquetTargetConfig(type="parquet", path=str(root))
        h = Harness(
            kind, lambda: ParquetTarget("conf", config, state), lambda s: replay_oracle(root, s)
        )
        h.root = root
    yield h
    state.close()
