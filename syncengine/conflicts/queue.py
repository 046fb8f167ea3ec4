"""The manual conflict queue: parking, holding later changes, and resolving by hand.

Everything here is rows already set aside, so per-row Python is fine.

Crash safety: the resolver parks and holds (one SQLite transaction) *before* the batch's data
commits at the target. If the process dies in between, the batch is replayed; a change whose key
and source position are already parked or held is recognised and not queued twice. A parked
conflict keeps, in its ``delta`` JSON, the source position, the table's key and Arrow schema, and
the deepdiff deltas base→local and base→remote, so it can be resolved later without the source.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from syncengine.changes import UNSENT_PREFIX
from syncengine.conflicts.rows import (
    encode_rows,
    loads,
    schema_from_text,
    schema_to_text,
)
from syncengine.conflicts.widen import decode_exact
from syncengine.state import Conflict
from syncengine.state.protocols import ConflictQueue, StateTransaction
from syncengine.targets.base import TableSpec

META_DTYPES: dict[str, pl.DataType] = {
    "_op": pl.String(),
    "_pos": pl.String(),
    "_ts": pl.Datetime("us", "UTC"),
    "_txid": pl.Int64(),
}


@dataclass(frozen=True)
class Parked:
    """A conflict to park: JSON rows (``None``: absent on that side) and where it came from."""

    row_key: str
    base: str | None
    local: str | None
    remote: str | None
    position: str
    op: str


@dataclass(frozen=True)
class Held:
    """A change that waits behind a pending conflict of its key."""

    conflict_id: int
    row_key: str
    position: str
    change: str


def delta_json(spec: TableSpec, parked: Parked) -> str:
    """What a parked conflict keeps besides the three rows (see the module docstring)."""
    base = _doc(parked.base)
    return json.dumps(
        {
            "position": parked.position,
            "op": parked.op,
            "key": list(spec.key),
            "schema": schema_to_text(spec.schema),
            "local": _diff(base, _doc(parked.local)),
            "remote": _diff(base, _doc(parked.remote)),
        }
    )


def _doc(text: str | None) -> Any:
    value = loads(text)
    return {} if value is None else value


def _diff(before: Any, after: Any) -> Any:
    # deepdiff (≈ 40 ms to import) only for a queued conflict: every stream's first group
    # loads this module
    from deepdiff import DeepDiff

    return json.loads(DeepDiff(before, after, verbose_level=2).to_json())


def spec_of(conflict: Conflict) -> TableSpec:
    delta = json.loads(conflict.delta or "{}")
    return TableSpec(conflict.table, tuple(delta["key"]), schema_from_text(delta["schema"]))


def position_of(conflict: Conflict) -> str | None:
    position: str | None = json.loads(conflict.delta or "{}").get("position")
    return position


def queued_positions(
    state: ConflictQueue, pipeline: str, table: str, pending: dict[str, int]
) -> set[tuple[str, str]]:
    """(row_key, position) of every change already parked or held for these pending keys."""
    seen: set[tuple[str, str]] = set()
    for conflict in state.list_conflicts(pipeline):
        if conflict.table == table and conflict.key in pending:
            seen.add((conflict.key, position_of(conflict) or ""))
    for key, conflict_id in pending.items():
        for change in state.held_changes(conflict_id, pipeline):
            seen.add((key, json.loads(change).get("_pos") or ""))
    return seen


def park(
    state: ConflictQueue,
    db: StateTransaction,
    pipeline: str,
    spec: TableSpec,
    parked: Iterable[Parked],
) -> list[int]:
    """Park conflicts inside the caller's transaction; returns their ids."""
    ids = []
    for item in parked:
        conflict = Conflict(
            None, pipeline, spec.name, item.row_key, item.base, item.local, item.remote,
            delta_json(spec, item),
        )  # fmt: skip
        ids.append(state.park_conflict(db, conflict))
    return ids


def hold(
    state: ConflictQueue, db: StateTransaction, pipeline: str, table: str, held: Sequence[Held]
) -> None:
    state.hold_changes(db, pipeline, table, [(h.conflict_id, h.row_key, h.change) for h in held])


def change_texts(changes: pl.DataFrame, columns: Sequence[str]) -> pl.Series:
    """Held changes as JSON: data, ``_op``/``_pos``/``_ts``/``_txid`` and unsent masks."""
    unsent = [c for c in changes.columns if c.startswith(UNSENT_PREFIX)]
    keep = [c for c in (*columns, *META_DTYPES, *unsent) if c in changes.columns]
    return encode_rows(changes, keep)


def decode_changes(texts: Sequence[str], spec: TableSpec) -> tuple[TableSpec, pl.DataFrame]:
    """Held changes back as a change frame with the spec's types (unsent masks false if absent);
    a column holding a value with no native form stays Postgres text, as the spec returned
    says (:func:`~syncengine.conflicts.widen.decode_exact`)."""
    unsent = {UNSENT_PREFIX + c: pl.Boolean() for c in spec.schema.names}
    series = pl.Series(texts, dtype=pl.String)
    spec, frame = decode_exact(series, spec, {**META_DTYPES, **unsent})
    sent_everywhere = [c for c in unsent if frame[c].null_count() == frame.height]
    frame = frame.drop(sent_everywhere)
    return spec, frame.with_columns(
        pl.col(c).fill_null(False) for c in unsent if c in frame.columns
    )
