"""Bulk writes for the Mongo target: unordered, retrying only the operations that failed.

Outside a transaction a partly failed bulk write is not repeated whole: operations that failed
with a transient code are retried with backoff, inserts that met their ``_id`` are redone as
upserts, those refused for their content (duplicate key on another unique index, validation,
size) become rejected rows. Inside a transaction any write error aborts it; :class:`Existing`
(redo the write with upserts) or :class:`Rejected` (leave these rows out) tells the caller what
to change in the next attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Container, Mapping
from typing import Any

import polars as pl
from pymongo import InsertOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import BulkWriteError, ConnectionFailure, PyMongoError

from syncengine.config.secrets import redact
from syncengine.errors import MONGO_RETRIABLE_CODES, RetriableError, SyncEngineError
from syncengine.mongoclient import error_rule
from syncengine.targets.base import ApplyResult, TableWrite
from syncengine.targets.mongo.ops import RowWrites

_ATTEMPTS = 5
_DUPLICATE_KEY = 11000


def translate(exc: PyMongoError, doing: str) -> SyncEngineError:
    """The engine error for a driver error (the error table, target side)."""
    message = f"mongo target: {doing} failed: {redact(str(exc).splitlines()[0])}"
    return error_rule(exc).error("target", message)


async def bulk_write(
    collection: Any,
    write: TableWrite,
    plan: RowWrites,
    writes: list[int],
    result: ApplyResult,
    session: AsyncClientSession | None,
    inserts: Container[int] = (),
) -> list[int]:
    """Unordered bulk write of the plan's writes at positions ``writes`` (full images at
    positions in ``inserts`` as inserts); retry only transient failures; reject content
    failures; inserts that meet an existing ``_id`` become upserts. Returns the batch rows
    refused.

    In a transaction the first write error aborts it: :class:`Existing` or :class:`Rejected`
    says what to change in the next attempt."""
    pending = [(plan.operation(i, i in inserts), i) for i in writes]
    refused: list[int] = []
    for attempt in range(_ATTEMPTS):
        if not pending:
            return refused
        try:
            done = await collection.bulk_write(
                [op for op, _ in pending], ordered=False, session=session
            )
            count(result, done.bulk_api_result)
            return refused
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if session is not None:
                if not errors or any(e.get("code") in MONGO_RETRIABLE_CODES for e in errors):
                    raise  # transient: the transaction is retried as a whole
                if any(exists(e, pending[e["index"]][0]) for e in errors):
                    raise Existing() from None
                reasons = {plan.rows[pending[e["index"]][1]]: str(e.get("errmsg")) for e in errors}
                raise Rejected(reasons) from None
            count(result, exc.details)
            retry, again = [], []
            for error in errors:
                op, i = pending[error["index"]]
                if error.get("code") in MONGO_RETRIABLE_CODES:
                    retry.append((op, i))
                elif exists(error, op):
                    again.append((plan.operation(i, insert=False), i))
                else:
                    reason = str(error.get("errmsg"))
                    result.rejected.append((write.spec.name, row_of(write, plan.rows[i]), reason))
                    refused.append(plan.rows[i])
            pending = again + retry
            if not retry:
                continue  # only inserts turned upserts: no need to wait
        except ConnectionFailure:
            if session is not None or attempt == _ATTEMPTS - 1:
                raise
        await asyncio.sleep(0.05 * 2**attempt)
    if pending:
        raise RetriableError(f"mongo target: {len(pending)} write(s) kept failing")
    return refused


def exists(error: Mapping[str, Any], op: Any) -> bool:
    """Whether a write error is an insert meeting a document with its ``_id`` (a replayed
    snapshot row), as opposed to a duplicate on another unique index (a refused row)."""
    if not isinstance(op, InsertOne) or error.get("code") != _DUPLICATE_KEY:
        return False
    pattern = error.get("keyPattern")
    if pattern is not None:
        return list(pattern) == ["_id"]
    return " index: _id_ " in str(error.get("errmsg"))


class Existing(Exception):
    """Inserts met existing documents inside a transaction (which is now aborted): the write
    is to be redone with upserts."""

    def __init__(self, table: int | str = -1) -> None:
        super().__init__("insert met an existing _id")
        self.table = table


class Rejected(Exception):
    """Rows whose writes the server refused inside a transaction (which is now aborted)."""

    def __init__(self, rows: dict[int, str]) -> None:
        super().__init__(f"{len(rows)} write(s) refused")
        self.rows = rows
        self.table = -1


def count(result: ApplyResult, details: Mapping[str, Any]) -> None:
    result.upserted += sum(int(details.get(n, 0)) for n in ("nInserted", "nUpserted", "nModified"))
    result.deleted += int(details.get("nRemoved", 0))


def key_rows(write: TableWrite, rows: list[int]) -> pl.DataFrame:
    """Key columns of the given rows of a write (to drop their shadow changes)."""
    return write.batch.to_polars().select(list(write.spec.key))[rows]


def row_of(write: TableWrite, index: int) -> dict[str, Any]:
    row: dict[str, Any] = write.batch.data.slice(index, 1).to_pylist()[0]
    return row
