"""Change events → row images, pure (no I/O), so every event shape is unit-tested.

What each ``operationType`` becomes (the row's ``_op``):

* ``insert`` → ``c`` with ``fullDocument``; fields the document lacks are *unsent* (absent at
  the target too, not null).
* ``replace`` → ``c``: a full replacement, the row becomes exactly the new document (under
  ``updateLookup``, the document as it is now: see below).
* ``update`` with a ``fullDocument`` (``updateLookup`` / post-image) → ``u`` with the document's
  fields; the event's top-level ``removedFields`` are sent as null; any other field the document
  lacks is unsent (it never existed, or a later event removes it and says so).
* ``update`` whose ``fullDocument`` is null under ``updateLookup`` (the document was gone when
  the server looked it up) → no row: its delete (or a drop) follows in the stream and settles
  the key.
* ``update`` whose ``fullDocument`` is null otherwise (the post-image expired, or
  ``full_document: default``) → with a before-image, the post-image rebuilt from it exactly
  (:func:`apply_update`), a full ``u``; without one a *partial* ``u`` from
  ``updateDescription``: each top-level ``updatedFields`` entry is sent, each
  ``removedFields`` entry is sent as null, every other column is unsent. A nested path
  (``a.b``, ``arr.3``, ``truncatedArrays``) cannot be expressed as a top-level value without
  the rest of ``a``: ``a`` stays unsent and the path is named in a warning.
* ``insert``/``replace`` without ``fullDocument`` (servers that omit it) → looked up by ``_id``
  by the caller (:attr:`Row.lookup`), like ``updateLookup`` would; a document gone by then is
  skipped, its later delete follows.
* ``delete`` → ``d`` (``_id`` only).
* ``drop``, ``rename`` (of the watched collection) and ``dropDatabase`` (every configured
  collection) → ``t``: the target table is emptied, as the source collection is. A rename into
  a configured collection (``$out``'s way of replacing it, ``renameCollection`` with
  ``dropTarget``) gives no row: its documents are in no event, so the source asks for the
  collection's copy (:func:`renamed_into`).
* ``invalidate`` → no row; the stream reopens after it.

**Current, not historical, documents (``current``, i.e. ``updateLookup``).** A looked-up
document is the document at lookup time, which may already include later changes; the
position fence then records it at its event's earlier position. A row holding a document as it
was at an event (a replacement's ``fullDocument``, an update's own fields) must therefore never
follow it: after a crash, the replay of such an event would pass the fence and put the older
state over the newer one. So with ``current`` every
update and replace row is a looked-up document, and an update whose document is gone gives
no row.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from syncengine.changes import OP_DELETE, OP_INSERT, OP_TRUNCATE, OP_UPDATE, is_reserved
from syncengine.sources.mongo.positions import as_datetime, event_position

log = logging.getLogger("syncengine.sources.mongo")

TRUNCATING = ("drop", "rename", "dropDatabase")


@dataclass
class Row:
    collection: str
    op: str
    doc: dict[str, Any]
    pos: str
    ts: datetime
    txid: int | None = None
    before: dict[str, Any] | None = None
    #: the event carried no document: the caller looks it up by ``_id``
    lookup: bool = False
    #: the engine's own write (two-way: :mod:`syncengine.sources.mongo.origins`)
    echo: bool = False
    warnings: list[str] = field(default_factory=list)


def txn_of(event: dict[str, Any]) -> tuple[Any, ...] | None:
    """Identity of the multi-document transaction an event belongs to (None: not in one)."""
    number = event.get("txnNumber")
    if number is None:
        return None
    lsid = event.get("lsid") or {}
    return (repr(lsid.get("id")), repr(lsid.get("uid")), int(number))


class Boundaries:
    """The last position that is safe to resume from: not inside a transaction.

    Events of one transaction share ``lsid``/``txnNumber`` and arrive consecutively; a
    transaction is known to have ended only when an event outside it arrives, so its last
    event becomes a boundary then. Until that, batches carry the boundary before it and a crash
    replays the whole transaction.
    """

    def __init__(self, last: str | None = None) -> None:
        self.last = last
        self._open: tuple[Any, ...] | None = None
        self._open_pos: str | None = None

    @property
    def open(self) -> bool:
        return self._open is not None

    def settle(self) -> bool:
        """The stream had nothing more to send: a transaction's events are all delivered
        together after its commit, so the open one is complete. True if ``last`` moved."""
        if self._open is None:
            return False
        self.last, self._open = self._open_pos, None
        return True

    def see(self, txn: tuple[Any, ...] | None, position: str) -> None:
        if self._open is not None and txn != self._open:
            self.last, self._open = self._open_pos, None
        if txn is None:
            self.last = position
        else:
            self._open, self._open_pos = txn, position


def renamed_into(event: dict[str, Any], collections: Sequence[str]) -> str | None:
    """The configured collection a ``rename`` event replaced (None: not one)."""
    if event.get("operationType") != "rename":
        return None
    to = (event.get("to") or {}).get("coll")
    return to if to in collections else None


def event_rows(
    event: dict[str, Any], collections: Sequence[str], current: bool = False, wall: bool = False
) -> list[Row]:
    """The rows one change event becomes (none for events that change no data); ``current``:
    the stream looks documents up (``updateLookup``), see the module docstring; ``wall``: the
    row's time is the event's ``wallTime`` (MongoDB 6.0+, milliseconds) where it has one, not
    its cluster time (seconds): two-way ``timestamp`` compares it with Postgres commit times."""
    kind = event.get("operationType")
    ns = event.get("ns") or {}
    coll = ns.get("coll")
    pos = event_position(event["clusterTime"], event["_id"])
    ts = as_datetime(event["clusterTime"])
    if wall and isinstance(event.get("wallTime"), datetime):
        ts = event["wallTime"]
    txid = event.get("txnNumber")
    before = event.get("fullDocumentBeforeChange")
    key = (event.get("documentKey") or {}).get("_id")

    def row(op: str, doc: dict[str, Any], collection: str | None = coll, **kw: Any) -> Row:
        assert collection is not None
        return Row(collection, op, doc, pos, ts, txid, before=before, **kw)

    if kind == "dropDatabase":
        return [row(OP_TRUNCATE, {"_id": None}, c) for c in collections]
    if kind in TRUNCATING:
        return [row(OP_TRUNCATE, {"_id": None})] if coll in collections else []
    if coll not in collections:
        return []
    full = event.get("fullDocument")
    if kind in ("insert", "replace"):
        if full is None or (kind == "replace" and current):
            return [row(OP_INSERT, {"_id": key}, lookup=True)]
        return [row(OP_INSERT, full)]
    if kind == "delete":
        return [row(OP_DELETE, {"_id": key})]
    if kind == "update":
        description = event.get("updateDescription") or {}
        if full is not None:
            return [row(OP_UPDATE, with_removed(full, description))]
        if current:
            return []  # gone when looked up: its delete follows
        return [partial_update(row(OP_UPDATE, {"_id": key}), description)]
    return []  # invalidate, create, createIndexes, modify …: no data change


def partial_update(row: Row, description: dict[str, Any]) -> Row:
    """Fill ``row`` from an ``updateDescription`` (see the module docstring)."""
    updated: dict[str, Any] = description.get("updatedFields") or {}
    removed: list[str] = list(description.get("removedFields") or [])
    truncated = [t["field"] for t in description.get("truncatedArrays") or []]
    nested = [p for p in [*updated, *removed, *truncated] if "." in p] + truncated
    if row.before is not None:  # the pre-image and the update are the post-image, exactly
        row.doc = with_removed(apply_update(row.before, description), description)
        return row
    skipped = {p.split(".", 1)[0] for p in nested}
    for path, value in updated.items():
        if path.split(".", 1)[0] not in skipped:
            row.doc[path] = value
    for path in removed:
        if path.split(".", 1)[0] not in skipped and not is_reserved(path):
            row.doc[path] = None
    if skipped:
        row.warnings.append(
            f"update of {row.doc.get('_id')!r} without a full document changed nested paths "
            f"{sorted(set(nested))}; fields {sorted(skipped)} keep their target value until the "
            "document's next change (enable before-images to apply them exactly)"
        )
    return row


def with_removed(document: dict[str, Any], description: dict[str, Any]) -> dict[str, Any]:
    """``document`` plus a null for each top-level field the update removed (but one of a
    name the engine keeps for its own columns: no target column can have held it, and the
    update that renames it away must go through)."""
    removed = [
        p for p in description.get("removedFields") or [] if "." not in p and not is_reserved(p)
    ]
    if not removed:
        return document
    out = dict(document)
    for name in removed:
        out.setdefault(name, None)
    return out


def apply_update(document: dict[str, Any], description: dict[str, Any]) -> dict[str, Any]:
    """The post-image: ``updateDescription`` applied to the pre-image, as the server did."""
    out = copy.deepcopy(document)
    for item in description.get("truncatedArrays") or []:
        target = _walk(out, item["field"].split("."), create=False)
        if isinstance(target, list):
            del target[item["newSize"] :]
    for path, value in (description.get("updatedFields") or {}).items():
        *parents, last = path.split(".")
        container = _walk(out, parents, create=True)
        _put(container, last, value)
    for path in description.get("removedFields") or []:
        *parents, last = path.split(".")
        container = _walk(out, parents, create=False)
        if isinstance(container, dict):
            container.pop(last, None)
        elif isinstance(container, list) and last.isdigit() and int(last) < len(container):
            container[int(last)] = None
    return out


def _walk(node: Any, parts: Iterable[str], *, create: bool) -> Any:
    for part in parts:
        if isinstance(node, list) and part.isdigit():
            index = int(part)
            if index >= len(node):
                if not create:
                    return None
                node.extend([None] * (index + 1 - len(node)))
            if node[index] is None and create:
                node[index] = {}
            node = node[index]
        elif isinstance(node, dict):
            if part not in node or node[part] is None:
                if not create:
                    return None
                node[part] = {}
            node = node[part]
        else:
            return None
    return node


def _put(container: Any, last: str, value: Any) -> None:
    if isinstance(container, list) and last.isdigit():
        index = int(last)
        if index >= len(container):
            container.extend([None] * (index + 1 - len(container)))
        container[index] = value
    elif isinstance(container, dict):
        container[last] = value
