"""Helpers for the Mongo source tests: build a source, drain a stream, replay batches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import bson
import pytest

from syncengine.changes import ChangeBatch, concat_batches
from syncengine.codecs.bson_arrow import decode_documents
from syncengine.config.models import BatchConfig, MongoSourceConfig
from syncengine.sources.mongo.source import MongoSource
from syncengine.state import SQLiteStateStore


def make_source(
    uri: str, db: str, tmp_path: Path, collections: list[str], **options: Any
) -> MongoSource:
    batch = options.pop("batch", None) or BatchConfig(max_rows=500, max_wait=0.2)
    config = MongoSourceConfig(
        type="mongo", uri=uri, database=db, collections=collections, **options
    )
    state = SQLiteStateStore(tmp_path / "state.db")
    return MongoSource("p1", config, state, batch)


async def drain(batches: AsyncIterator[ChangeBatch]) -> list[ChangeBatch]:
    return [b async for b in batches]


def rows_of(batches: list[ChangeBatch], table: str) -> list[dict[str, Any]]:
    mine = [b for b in batches if b.table == table]
    if not mine:
        return []
    return concat_batches(mine).data.to_pylist()


def replay(model: dict[str, dict[str, Any]], batches: list[ChangeBatch], table: str) -> None:
    """What a target does with the batches, on a dict keyed by ``_id`` (the ChangeBatch rules)."""
    for row in rows_of(batches, table):
        op = row["_op"]
        sent = {
            k: v
            for k, v in row.items()
            if not k.startswith(("_unsent.", "_before."))
            and k not in ("_op", "_pos", "_ts", "_txid")
            and not row.get(f"_unsent.{k}")
        }
        if op == "t":
            model.clear()
        elif op == "d":
            model.pop(row["_id"], None)
        elif op in ("c", "r"):
            model[row["_id"]] = sent
        else:
            model.setdefault(row["_id"], {}).update(sent)


def canonical(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Source documents in the same Arrow-derived Python form, nulls dropped, by ``_id``."""
    out = {}
    for doc in docs:
        row = decode_documents([doc]).table.to_pylist()[0]
        out[row["_id"]] = _strip(row)
    return out


def stripped(model: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: _strip(v) for k, v in model.items()}


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def expired_like(position: str) -> str:
    """A token of this server's format pointing before its history (test-server specific: the
    token layout is SecantusDB's; against real MongoDB use a token from a rolled-over oplog)."""
    head, data = position.split(":", 1)
    try:
        token = bson.decode(bytes.fromhex(data))
    except Exception:
        pytest.skip("resume tokens of this server cannot be crafted; needs an expired real one")
    token.update(s=0, t=bson.Timestamp(1, 1))
    return "0000000100000001:" + bson.encode(token).hex()
