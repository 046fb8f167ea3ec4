"""Which full images go in as plain inserts, and the ``_id`` lookups that decide it.

An insert costs the server much less than a replace-upsert (no lookup of a document to
replace first), so a full image is inserted whenever its ``_id`` is taken to be absent:

* snapshot rows (``r``) always: a backfill fills a collection that does not hold them yet.
  A resumed or repeated chunk does; the duplicate ``_id`` turns those rows into upserts
  (:func:`~syncengine.targets.mongo.bulk.bulk_write`; inside a transaction the whole write is
  redone with upserts), so a replay never loses or duplicates a row;
* stream inserts (``c``) when a lookup of their ``_id`` (in the same transaction) finds nothing:
  in normal operation they can meet a document (a delete + insert compacted into one ``c``, a
  replay after a crash, a document written by someone else), so they are not guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession

from syncengine.targets.mongo.ops import CREATE, SNAPSHOT, RowWrites

#: ``_id``s per ``$in`` (one round trip each: the cursor's first batch holds them all). Bounded
#: so a batch of any size makes commands far below the 16 MB limit, and small because a server's
#: cost may grow with list length × documents found: the test server (SecantusDB) matches each
#: found document against the list one by one, and a 50,000-row re-backfill there took 97 s of
#: server CPU with 1,000 ids per query, 30 s with 250. On MongoDB it is a few more round trips.
IN_CHUNK = 250


async def find_ids(
    collection: Any,
    ids: Sequence[Any],
    session: AsyncClientSession | None = None,
    projection: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """The documents with these ``_id``s (those that exist), ``IN_CHUNK`` ids per query."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(ids), IN_CHUNK):
        chunk = list(ids[start : start + IN_CHUNK])
        cursor = collection.find(
            {"_id": {"$in": chunk}}, projection, session=session, batch_size=len(chunk)
        )
        found.extend(await cursor.to_list(None))
    return found


async def absent(
    collection: Any, ids: Sequence[Any], session: AsyncClientSession | None
) -> list[bool]:
    """Per ``_id``: no document has it."""
    found = await find_ids(collection, ids, session, {"_id": 1})
    present = {_hashable(d["_id"]) for d in found}
    return [_hashable(i) not in present for i in ids]


async def insert_positions(
    collection: Any, plan: RowWrites, session: AsyncClientSession | None, *, allowed: bool = True
) -> set[int]:
    """Writes of ``plan`` to make inserts; none when not ``allowed`` (an insert met an
    existing document in an earlier attempt of this transaction)."""
    if not allowed:
        return set()
    inserts = set(plan.positions(SNAPSHOT))
    creates = plan.positions(CREATE)
    if creates:
        missing = await absent(collection, [plan.ids[i] for i in creates], session)
        inserts.update(i for i, m in zip(creates, missing, strict=True) if m)
    return inserts


def _hashable(value: Any) -> Any:
    """An ``_id`` as a set member (a composite key's ``_id`` is a sub-document; Decimal128 has
    no hash). Telling two equal ids apart only costs an insert that falls back to an upsert."""
    if isinstance(value, dict):
        return tuple((k, _hashable(v)) for k, v in value.items())
    try:
        hash(value)
    except TypeError:
        return (type(value).__name__, repr(value))
    return value
