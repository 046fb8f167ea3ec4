"""Which change events are the engine's own writes (two-way): pure, no I/O.

The applying direction opens every transaction with a write of its origin's marker document
(:mod:`syncengine.targets.mongo.origin`). :class:`Echoes` follows the stream: a marker event of
one of ``own`` origins names a transaction (its ``lsid``/``txnNumber``), and every later event
of that transaction is an echo. A transaction's events arrive together and the resume position
is never inside one, so the marker is always seen before the rest, after a restart too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from syncengine.sources.mongo.events import txn_of
from syncengine.targets.mongo.origin import ORIGINS


def marker_match(own: Sequence[str]) -> list[dict[str, Any]]:
    """The ``$or`` branch of the stream's ``$match`` that lets the markers of ``own`` through
    (none when there is no origin to recognise)."""
    if not own:
        return []
    return [{"ns.coll": ORIGINS, "documentKey._id": {"$in": list(own)}}]


class Echoes:
    """The stream's state of recognition: the transaction last marked as the engine's."""

    def __init__(self, own: Sequence[str]) -> None:
        self.own = frozenset(own)
        self._marked: tuple[Any, ...] | None = None

    def see(self, event: dict[str, Any]) -> bool | None:
        """Whether ``event`` is an echo; None for a marker event itself (no data change)."""
        if not self.own:
            return False
        txn = txn_of(event)
        if (event.get("ns") or {}).get("coll") == ORIGINS:
            key = (event.get("documentKey") or {}).get("_id")
            if key in self.own and txn is not None:
                self._marked = txn
            return None
        return txn is not None and txn == self._marked
