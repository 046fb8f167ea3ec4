"""Bulk writes for the Mongo target: unordered, retrying only the operations that failed.

Outside a transaction a partly failed bulk write is not repeated whole: operations that failed
with a transient code are retried with backoff, those refused for their content (duplicate key
on a unique index, validation, size) become rejected rows. Inside a transaction any write error
aborts it; :class:`Rejected` tells the caller which rows to leave out of the next attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import polars as pl
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import BulkWriteError, ConnectionFailure, PyMongoError

from syncengine.config.secrets import redact
from syncengine.errors import (
    MONGO_RETRIABLE_CODES,
    FatalError,
    RetriableError,
    SyncEngineError,
    TargetUnavailable,
)
from syncengine.targets.base import ApplyResult, TableWrite
from syncengine.targets.mongo.ops import Op

_ATTEMPTS = 5


def translate(exc: PyMongoError, doing: str) -> SyncEngineError:
    message = f"mongo target: {doing} failed: {redact(str(exc).splitlines()[0])}"
    code = getattr(exc, "code", None)
    if isinstance(exc, ConnectionFailure):
        return TargetUnavailable(message)
    if code in MONGO_RETRIABLE_CODES or exc.has_error_label("RetryableWriteError"):
        return RetriableError(message)
    return FatalError(message)


async def bulk_write(
    collection: Any,
    write: TableWrite,
    ops: list[Op],
    index: list[int],
    result: ApplyResult,
    session: AsyncClientSession | None,
) -> list[int]:
    """Unordered bulk write; retry only transient failures; reject content failures.
    Returns the row indices refused."""
    pending = list(zip(ops, index, strict=True))
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
                reasons = {pending[e["index"]][1]: str(e.get("errmsg")) for e in errors}
                raise Rejected(reasons) from None
            count(result, exc.details)
            retry = []
            for error in errors:
                op, row = pending[error["index"]]
                if error.get("code") in MONGO_RETRIABLE_CODES:
                    retry.append((op, row))
                else:
                    reason = str(error.get("errmsg"))
                    result.rejected.append((write.spec.name, row_of(write, row), reason))
                    refused.append(row)
            pending = retry
        except ConnectionFailure:
            if session is not None or attempt == _ATTEMPTS - 1:
                raise
        await asyncio.sleep(0.05 * 2**attempt)
    if pending:
        raise RetriableError(f"mongo target: {len(pending)} write(s) kept failing")
    return refused


class Rejected(Exception):
    """Rows whose writes the server refused inside a transaction (which is now aborted)."""

    def __init__(self, rows: dict[int, str]) -> None:
        super().__init__(f"{len(rows)} write(s) refused")
        self.rows = rows
        self.table = -1


def count(result: ApplyResult, details: Mapping[str, Any]) -> None:
    result.upserted += int(details.get("nUpserted", 0)) + int(details.get("nModified", 0))
    result.deleted += int(details.get("nRemoved", 0))


def key_rows(write: TableWrite, rows: list[int]) -> pl.DataFrame:
    """Key columns of the given rows of a write (to drop their shadow changes)."""
    return write.batch.to_polars().select(list(write.spec.key))[rows]


def row_of(write: TableWrite, index: int) -> dict[str, Any]:
    return write.batch.data.slice(index, 1).to_pylist()[0]
