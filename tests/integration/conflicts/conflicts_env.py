"""A real Postgres or Mongo target with hand-edit helpers, for the conflict integration tests.

The table is the unit tests' ``items`` (id, name, qty, updated_at)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
from pymongo import MongoClient

from syncengine.changes import ChangeBatch
from syncengine.config.models import ConflictsConfig, MongoTargetConfig, PostgresTargetConfig
from syncengine.conflicts import ConflictResolver, Resolved
from syncengine.state import SQLiteStateStore
from syncengine.targets import make_target
from syncengine.targets.base import Checkpoint
from tests.unit.strategies.test_strategies_resolver import SPEC


def t(minute: int) -> datetime:
    return datetime(2024, 1, 1, 0, minute, tzinfo=UTC)


def row(i: int, name: str, qty: int, minute: int) -> dict[str, Any]:
    return {"id": i, "name": name, "qty": qty, "updated_at": t(minute)}


def batch(rows: list[dict[str, Any]], ops: list[str], start: int) -> ChangeBatch:
    schema = pa.schema([SPEC.schema.field(k) for k in rows[0]])
    return ChangeBatch.build(
        "items",
        pa.Table.from_pylist(rows, schema=schema),
        ops=ops,
        positions=[f"{start + i:016X}" for i in range(len(rows))],
        ts=[t(30)] * len(rows),
        key=["id"],
    )


class Env:
    """One pipeline ``p`` writing table ``items`` to a real target."""

    def __init__(self, kind: str, where: dict[str, str], state_path: Path, **conflicts: Any):
        self.kind = kind
        self.where = where
        self.state_path = state_path
        self.conflicts = ConflictsConfig(**conflicts)
        self.config = (
            PostgresTargetConfig(type="postgres", dsn=where["dsn"])
            if kind == "postgres"
            else MongoTargetConfig(type="mongo", uri=where["uri"], database=where["database"])
        )
        self.position = 0

    async def open(self) -> Env:
        self.state = SQLiteStateStore(self.state_path)
        self.target = make_target("p", self.config, self.state)
        await self.target.open()
        self.spec = await self.target.ensure_table(SPEC)
        self.resolver = ConflictResolver("p", self.target, self.state, self.conflicts)
        return self

    async def close(self) -> None:
        await self.target.close()
        self.state.close()

    async def run(
        self, rows: list[dict[str, Any]], ops: list[str], *, commit: bool = True
    ) -> Resolved:
        """Apply the changes at the next positions; ``commit``: with the checkpoint after
        them (False: a part of a source transaction committed before its end, or a replay
        that commits no checkpoint of its own)."""
        b = batch(rows, ops, self.position + 1)
        self.position += len(rows)
        resolved = await self.resolver.resolve(self.spec, b)
        checkpoint = Checkpoint("s", b.last_position or "") if commit else None
        await self.target.apply([resolved.write], checkpoint)
        return resolved

    # -- what a person does at the target, through the driver -------------------------------

    def edit(self, i: int, **values: Any) -> None:
        if self.kind == "postgres":
            with psycopg.connect(self.where["dsn"], autocommit=True) as conn:
                for name, value in values.items():
                    conn.execute(f"UPDATE items SET {name} = %s WHERE id = %s", (value, i))
        else:
            with MongoClient(self.where["uri"]) as client:
                client[self.where["database"]].items.update_one({"_id": i}, {"$set": values})

    def delete(self, i: int) -> None:
        if self.kind == "postgres":
            with psycopg.connect(self.where["dsn"], autocommit=True) as conn:
                conn.execute("DELETE FROM items WHERE id = %s", (i,))
        else:
            with MongoClient(self.where["uri"]) as client:
                client[self.where["database"]].items.delete_one({"_id": i})

    def insert(self, values: dict[str, Any]) -> None:
        if self.kind == "postgres":
            with psycopg.connect(self.where["dsn"], autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO items (id, name, qty, updated_at) VALUES (%s, %s, %s, %s)",
                    (values["id"], values["name"], values["qty"], values["updated_at"]),
                )
        else:
            with MongoClient(self.where["uri"]) as client:
                client[self.where["database"]].items.insert_one({"_id": values["id"], **values})

    def rows(self) -> dict[int, tuple[str, int]]:
        """id → (name, qty) as the target holds them now."""
        if self.kind == "postgres":
            with psycopg.connect(self.where["dsn"]) as conn:
                found = conn.execute("SELECT id, name, qty FROM items").fetchall()
            return {i: (n, q) for i, n, q in found}
        with MongoClient(self.where["uri"]) as client:
            docs = client[self.where["database"]].items.find({})
            return {d["_id"]: (d.get("name"), d.get("qty")) for d in docs}
