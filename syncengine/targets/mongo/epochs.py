"""Fencing epochs in a Mongo target (with transactions): which attempt may commit for a
pipeline, as :mod:`syncengine.targets.postgres.epochs` does in a Postgres target.

Every cluster stream attempt :func:`claim`\\ s the pipeline first (``$inc`` of its document in
``_syncengine_epochs``, outside any transaction, so a paused holder sees it at once), and every
transaction it commits ends with :func:`hold`: an update of that document matched on the
attempt's own epoch. Matched nothing: the epoch moved on, and the transaction is aborted with
:func:`~syncengine.targets.fencing.stale`.

Why there is no window: :func:`hold` *writes* the document, so the transaction holds its
write lock until it ends. A claim arriving meanwhile waits for that transaction to commit or
abort (a write outside a transaction waits for one that already modified the document); a
claim that committed first makes the held update match nothing (or meet a write conflict,
and the transaction's retry then matches nothing). A paused worker's open transaction is
aborted by the server after its lifetime (``transactionLifetimeLimitSeconds``, 60 s by
default), which is as long as a successor's claim can wait.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession

from syncengine.targets.fencing import stale

EPOCHS = "_syncengine_epochs"


async def claim(db: Any, pipeline: str, holder: str) -> int:
    """Take the pipeline over: the next epoch, committed before this returns."""
    doc = await db[EPOCHS].find_one_and_update(
        {"_id": pipeline},
        {"$inc": {"epoch": 1}, "$set": {"holder": holder, "claimed_at": _now()}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    return int(doc["epoch"])


async def hold(db: Any, session: AsyncClientSession, pipeline: str, epoch: int) -> None:
    """Last in the transaction about to commit: go on only while ``epoch`` is the pipeline's
    current one, and make a claim wait until this transaction ended."""
    done = await db[EPOCHS].update_one(
        {"_id": pipeline, "epoch": epoch}, {"$set": {"held_at": _now()}}, session=session
    )
    if done.matched_count == 0:
        found = await db[EPOCHS].find_one({"_id": pipeline}, session=session)
        raise stale(pipeline, epoch, (int(found["epoch"]), str(found["holder"])) if found else None)


def _now() -> str:
    return datetime.now(UTC).isoformat()
