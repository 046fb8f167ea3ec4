"""Halving a group that is too large for one Mongo transaction.

MongoDB refuses a transaction whose changes do not fit in the storage engine's cache
(``TransactionTooLargeForCache``) or, on servers before 4.2, exceed 16 MB of oplog
(``TransactionTooLarge``). A few hundred rows with megabyte values are enough. Retrying the
same group fails the same way forever, so the target applies it in halves instead, each its
own transaction, the checkpoint only with the last one. Groups above :data:`TRANSACTION_BYTES`
of row data are halved before they are even tried: a transaction close to the cache limit is
slow on any server (its dirty pages cannot be evicted until it commits), and the test server
deadlocks committing one. A crash in between replays the group
from the old checkpoint: the halves already committed hold their keys' positions in the shadow,
so the position fence drops what they already applied; nothing is lost or applied twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import pyarrow.compute as pc
from pymongo.errors import OperationFailure, PyMongoError

from syncengine import keyless
from syncengine.changes import OP_TRUNCATE, ChangeBatch
from syncengine.targets.base import TableWrite
from syncengine.targets.shadow import shadow_of_keys

#: row data (Arrow bytes) above which a group is split before it is tried: MongoDB's
#: historical transaction limit; ordinary rows fill it only with tens of thousands of rows
TRANSACTION_BYTES = 16 * 1024 * 1024

#: server error codes (and names) meaning "this transaction is too large", not "try again"
TOO_LARGE_CODES = {257, 388}
TOO_LARGE_NAMES = {"TransactionTooLarge", "TransactionTooLargeForCache"}


def too_large(exc: PyMongoError) -> bool:
    """Whether the server refused a transaction for its size."""
    if not isinstance(exc, OperationFailure):
        return False
    details = exc.details or {}
    errors = [details, *details.get("writeErrors", [])]
    return (
        any(
            e.get("code") in TOO_LARGE_CODES or e.get("codeName") in TOO_LARGE_NAMES for e in errors
        )
        or exc.code in TOO_LARGE_CODES
    )


def oversized(writes: Sequence[TableWrite]) -> bool:
    """Whether the group carries more row data than one transaction should."""
    return sum(int(w.batch.data.nbytes) for w in writes) > TRANSACTION_BYTES


def halves(writes: list[TableWrite]) -> tuple[list[TableWrite], list[TableWrite]] | None:
    """The group as two smaller groups, in order (None: one row, nothing left to split).

    Several tables split between tables; one table splits its rows. A batch that truncates
    is not split (its rows before and after the truncate belong together)."""
    if len(writes) > 1:
        middle = len(writes) // 2
        return writes[:middle], writes[middle:]
    (write,) = writes
    rows = write.batch.num_rows
    if rows < 2 or pc.any(pc.equal(write.batch.data.column("_op"), OP_TRUNCATE)).as_py():
        return None
    return [part(write, 0, rows // 2)], [part(write, rows // 2, rows)]


def part(write: TableWrite, start: int, stop: int) -> TableWrite:
    """Rows ``start:stop`` of a write with the shadow changes of their keys (a compacted batch
    has one row per key)."""
    batch = write.batch
    data = batch.data.slice(start, stop - start)
    rows = ChangeBatch(batch.table, data, batch.key, batch.meta)
    if not write.spec.key:  # keyless: each half moves the table's fence past its own rows
        return TableWrite(write.spec, rows, keyless.fence_shadow([rows]))
    keys = pl.from_arrow(data.select(list(write.spec.key)))
    assert isinstance(keys, pl.DataFrame)
    return TableWrite(write.spec, rows, shadow_of_keys(write, keys, keep=True))
