"""Which change events are the engine's own writes (two-way): pure, no I/O.

The applying direction opens every transaction with a write of its origin's marker document
(:mod:`syncengine.targets.mongo.origin`). :class:`Echoes` follows the stream: a marker event of
one of ``own`` origins names a transaction (its ``lsid``/``txnNumber``), and every later event
of that transaction is an echo. A transaction's events arrive together and the resume position
is never inside one, so the marker is always seen before the rest, after a restart too.

Tombstones: a delete the sibling applied to a document already gone writes no data, so no
echo would carry its time back (and a row written provisionally over it on the other side
would never be corrected). The sibling records the delete's version in the same transaction,
with the document's ``_id`` (:func:`syncengine.targets.mongo.versions.operations`); inside an
echo transaction that version's event is read as the echo delete of that document, unless the
transaction deleted the document itself (its own delete event came first).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from syncengine.mongoids import same_id
from syncengine.sources.mongo.events import txn_of
from syncengine.targets.mongo.origin import ORIGINS, VERSIONS


def marker_match(own: Sequence[str]) -> list[dict[str, Any]]:
    """The ``$or`` branch of the stream's ``$match`` that lets the markers of ``own`` through
    (none when there is no origin to recognise)."""
    if not own:
        return []
    return [{"ns.coll": ORIGINS, "documentKey._id": {"$in": list(own)}}]


def tombstone_match(own: Sequence[str], collections: Sequence[str]) -> list[dict[str, Any]]:
    """The ``$or`` branch that lets recorded deletes of ``collections`` through (read only
    inside echo transactions; none when there is no origin to recognise)."""
    if not own:
        return []
    return [
        {
            "ns.coll": VERSIONS,
            "fullDocument.deleted": True,
            "fullDocument.t": {"$in": list(collections)},
            "fullDocument.id": {"$exists": True},
        }
    ]


class Echoes:
    """The stream's state of recognition: the transaction last marked as the engine's."""

    def __init__(self, own: Sequence[str]) -> None:
        self.own = frozenset(own)
        self._marked: tuple[Any, ...] | None = None
        #: (collection, ``_id``) the marked transaction deleted itself
        self._deleted: set[tuple[str, object]] = set()

    def see(self, event: dict[str, Any]) -> bool | None:
        """Whether ``event`` is an echo; None for a marker event itself (no data change)."""
        if not self.own:
            return False
        txn = txn_of(event)
        if (event.get("ns") or {}).get("coll") == ORIGINS:
            key = (event.get("documentKey") or {}).get("_id")
            if key in self.own and txn is not None:
                self._marked, self._deleted = txn, set()
            return None
        echo = txn is not None and txn == self._marked
        if echo and event.get("operationType") == "delete":
            self._deleted.add(_document(event, (event.get("documentKey") or {}).get("_id")))
        return echo

    def data_event(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """An echo event as the data change it stands for: a tombstone (see the module
        docstring) as the delete of its document, None where the transaction deleted that
        document itself; any other event as it is."""
        if (event.get("ns") or {}).get("coll") != VERSIONS:
            return event
        version = event.get("fullDocument") or {}
        if not version.get("deleted") or "id" not in version:
            return None
        ns = {**event["ns"], "coll": version.get("t")}
        gone = {**event, "operationType": "delete", "ns": ns, "documentKey": {"_id": version["id"]}}
        if _document(gone, version["id"]) in self._deleted:
            return None
        gone.pop("fullDocument", None)
        return gone


def _document(event: dict[str, Any], _id: Any) -> tuple[str, object]:
    """A document's identity: its collection and :func:`syncengine.mongoids.same_id`."""
    return (str((event.get("ns") or {}).get("coll")), same_id(_id))
