"""A keyless table's changes as Mongo writes (see :mod:`syncengine.keyless`).

Each row to append becomes a document whose ``_id`` is made from the position of the change
that added it: a stream position (``<commit LSN>.<row number in the transaction>``) is unique
per change, so a replayed group writes the same ``_id`` again (an insert that falls back to a
replace) and never a second document. Snapshot rows all share the snapshot position; they get
that position plus the row's number in the copy, and a keyless snapshot starts by emptying the
collection, so a restarted copy cannot leave two of a row either.

Each old image to remove becomes that many ``DeleteOne`` operations filtered on every field of
the image (``null`` matches null or missing), each removing one matching document.
"""

from __future__ import annotations

from itertools import count
from typing import Any

import polars as pl
import pyarrow as pa

from syncengine.changes import OP_READ
from syncengine.codecs.arrow_bson import arrow_to_columns
from syncengine.keyless import COUNT, ROW, delta
from syncengine.targets.base import TableSpec, TableWrite
from syncengine.targets.mongo.ops import CREATE, REMOVE, RowWrites, nest, with_spec_metadata

#: numbers snapshot rows within this process (their positions are all the snapshot's)
_copied = count()


def plan_keyless(spec: TableSpec, write: TableWrite) -> RowWrites:
    names = [n for n in write.batch.data_columns if n != "_id"]
    change = delta(write.batch, names)
    plan = RowWrites(change.truncate, [], [], [], [])
    appends = change.appends
    if appends.height:
        ops = write.batch.data.column("_op").take(pa.array(appends[ROW])).to_pylist()
        values = _converted(spec, appends, names)
        nested = any("." in n for n in names)
        for i, (row, op, pos) in enumerate(zip(appends[ROW], ops, appends["_pos"], strict=True)):
            _id = f"{pos}:{next(_copied)}" if op == OP_READ else pos
            fields = {n: values[n][i] for n in names}
            plan.rows.append(row)
            plan.kinds.append(CREATE)
            plan.ids.append(_id)
            plan.docs.append({"_id": _id, **(nest(fields) if nested else fields)})
    removes = change.removes
    if removes.height:
        values = _converted(spec, removes, names)
        for i, (row, n) in enumerate(zip(removes[ROW], removes[COUNT], strict=True)):
            image = {name: values[name][i] for name in names}
            for _ in range(n):
                plan.rows.append(row)
                plan.kinds.append(REMOVE)
                plan.ids.append(None)
                plan.docs.append(image)
    return plan


def _converted(spec: TableSpec, frame: pl.DataFrame, names: list[str]) -> dict[str, list[Any]]:
    table = with_spec_metadata(frame.select(names).to_arrow(), spec)
    return dict(zip(names, arrow_to_columns(table), strict=True))
