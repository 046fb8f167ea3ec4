"""Marking the engine's own Mongo transactions, so the other direction of a two-way pipeline
can tell them from everyone else's writes.

MongoDB has no replication origins. What a change event does carry, for a write made inside a
multi-document transaction, is the transaction's identity (``lsid`` and ``txnNumber``, the same
on every event of that transaction, and the events of one transaction arrive together, in the
order of its writes). So the applying direction makes the **first write of every apply
transaction** an update of its origin's marker document (``{_id: <origin>}`` in
:data:`ORIGINS`, in the target database); a reader that sees the marker's event knows that
every following event of the same ``lsid``/``txnNumber`` is the engine's
(:mod:`syncengine.sources.mongo.origins`).

Why this holds after a crash: a reader's resume position is never inside a transaction
(``sources.mongo.events.Boundaries``), so a replayed transaction is read from its first
event, the marker. The marker commits with the data or not at all. One marker document per
direction, written only by that direction's applier (one at a time), so markers of different
directions never conflict. Nothing here is specific to a server: it needs transactions (a
replica set or a sharded cluster) and change streams, which two-way needs anyway.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import PyMongoError

#: the collection of marker documents, one per origin (in the target database)
ORIGINS = "_syncengine_origins"
#: the per-key versions a two-way direction records (:mod:`.versions`; named here, without
#: its Polars, for the reader that takes the tombstones among them for echoes)
VERSIONS = "_syncengine_versions"


async def mark(db: Any, session: AsyncClientSession, origin: str) -> None:
    """The marker write, first in the open transaction of ``session``."""
    await db[ORIGINS].update_one(
        {"_id": origin}, {"$inc": {"transactions": 1}}, upsert=True, session=session
    )


async def ensure(db: Any) -> None:
    """Create :data:`ORIGINS` before a transaction writes to it (servers before 4.4 cannot
    create a collection inside one)."""
    if ORIGINS in await db.list_collection_names(filter={"name": ORIGINS}):
        return
    try:
        await db.create_collection(ORIGINS, check_exists=False)
    except PyMongoError as exc:
        if getattr(exc, "code", None) != 48:  # NamespaceExists: the other start won
            raise


def collection_options() -> dict[str, Any]:
    """How a two-way direction creates a collection: with pre- and post-images (MongoDB 6.0+).
    The reverse direction reads each update as the pre-image plus the update (the document as
    that update left it): looked up later, it could already hold the engine's next write, and
    a person's update would be judged with content it never had (README, *Two-way sync*)."""
    return {"changeStreamPreAndPostImages": {"enabled": True}}
