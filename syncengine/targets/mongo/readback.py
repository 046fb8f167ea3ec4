"""Two-way: a group's apply must not overwrite a document someone wrote after its read-back.

A two-way direction decides each key from the documents it read back (conflict detection,
versions) and only then applies. A write by a person to one of those documents in between
would be overwritten unseen: the direction's decision was about another state, and the person's
write would be lost, not judged. Postgres applies in the snapshot of the read-back (REPEATABLE
READ, :meth:`PostgresTarget.start_group`); MongoDB's reads in a transaction do not make later
writes conflict, so the apply transaction reads the documents it is about to write again, in its
snapshot, and compares them with what the group read (:func:`check`). A difference aborts the
transaction with a retriable error: the group is read and decided again from the checkpoint. A
write committed after the transaction's snapshot makes the transaction's own write fail with
MongoDB's write conflict, which retries it, check included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from pymongo.asynchronous.client_session import AsyncClientSession

from syncengine.errors import RetriableError
from syncengine.mongoids import same_id
from syncengine.targets.base import TableSpec
from syncengine.targets.mongo.fresh import find_ids
from syncengine.targets.mongo.ops import key_ids

#: collection → ``_id`` (:func:`norm`) → the document read back, None where there was none
Seen = dict[str, dict[Any, dict[str, Any] | None]]


def record(seen: Seen, table: str, ids: Sequence[Any], docs: Sequence[dict[str, Any]]) -> None:
    """What the group read of ``ids``."""
    found = {same_id(d["_id"]): d for d in docs}
    known = seen.setdefault(table, {})
    for value in ids:
        known[same_id(value)] = found.get(same_id(value))


async def check(
    collection: Any, seen: Seen, spec: TableSpec, rows: pa.Table, session: AsyncClientSession
) -> None:
    """Raise :class:`RetriableError` when a document the write touches differs, in the
    transaction's snapshot, from what the group read back."""
    known = seen.get(spec.name)
    if not known or not rows.num_rows or not spec.key:
        return
    ids = [i for i in key_ids(spec, rows.select(list(spec.key))) if same_id(i) in known]
    if not ids:
        return
    now = {same_id(d["_id"]): d for d in await find_ids(collection, ids, session)}
    moved = [i for i in ids if now.get(same_id(i)) != known[same_id(i)]]
    if moved:
        raise RetriableError(
            f"{spec.name}: {len(moved)} document(s) written by someone else since this group "
            f"read them (first _id {moved[0]!r}); the group is decided again"
        )
