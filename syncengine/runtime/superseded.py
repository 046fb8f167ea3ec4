"""Dead letters a later change of their key made obsolete (``superseded``).

A dead letter keeps its change's old position. A Postgres target fences in-order changes with
its stored checkpoint and keeps no per-key position for them (targets/postgres/floor.py), so
nothing at the target would stop a replayed letter from overwriting a newer value of its key.
The pipeline therefore notes it on the letter instead: every group's keys are matched
(vectorized) against
the pipeline's pending letters, which are few, and a letter whose key a later change touches is
marked superseded, before the group's target commit (a crash replays the group and marks
again; a mark is never lost behind a committed change). ``deadletters replay`` skips such
letters unless forced (:mod:`syncengine.runtime.replay`).

Keys are compared the way the conflict layer names them (:func:`row_keys`), with the letter's
values cast to the batch's own key types: a mapping-stage letter holds the source row (matched
against the source batches), a target-stage letter the mapped row (matched against the writes).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from syncengine.state import DeadLetter
from syncengine.state.protocols import DeadLetters

if TYPE_CHECKING:
    import polars as pl
else:
    from syncengine.deferred import polars as pl


@dataclass(frozen=True)
class _Letter:
    id: int
    target_stage: bool
    values: dict[str, object]
    position: str


class PendingLetters:
    """One pipeline's unreplayed, unsuperseded dead letters, loaded once and kept in step with
    the letters this process adds."""

    def __init__(self, state: DeadLetters, pipeline: str, *, ordered: bool) -> None:
        self.state = state
        self.pipeline = pipeline
        #: positions sort (compare them); otherwise any other position counts as later
        self.ordered = ordered
        self._by_table: dict[str, list[_Letter]] | None = None

    def forget(self) -> None:
        """Letters were added: load them again at the next match."""
        self._by_table = None

    def _letters(self) -> dict[str, list[_Letter]]:
        if self._by_table is None:
            by_table: dict[str, list[_Letter]] = {}
            for letter in self.state.list_dead_letters(self.pipeline):
                if letter.superseded is None and letter.id is not None:
                    by_table.setdefault(letter.table, []).append(_parse(letter))
            self._by_table = by_table
        return self._by_table

    def match(
        self, table: str, data: pa.Table, key: Sequence[str], *, target_stage: bool
    ) -> list[tuple[int, str]]:
        """(letter id, position) for the letters of source ``table`` whose key a later change
        in ``data`` (rows with ``_pos``, keyed by ``key``) touches."""
        letters = [x for x in self._letters().get(table, []) if x.target_stage == target_stage]
        if not letters or not key or not data.num_rows:
            return []
        from syncengine.conflicts.rows import row_keys

        if any(k not in data.column_names for k in key):
            return []
        changes = pl.from_arrow(data.select([*key, "_pos"]))
        assert isinstance(changes, pl.DataFrame)
        typed = {
            k: typed_column([x.values.get(k) for x in letters], data.schema.field(k)) for k in key
        }
        wanted = pl.from_arrow(pa.table(typed))
        assert isinstance(wanted, pl.DataFrame)
        pending = pl.DataFrame(
            {
                "__rk": row_keys(wanted, key),
                "__id": [x.id for x in letters],
                "__lpos": [x.position for x in letters],
            }
        )
        latest = (
            changes.with_columns(row_keys(changes, key).alias("__rk"))
            .group_by("__rk")
            .agg(pl.col("_pos").cast(pl.String).max())
        )
        hit = pending.join(latest, on="__rk", how="inner")
        later = (
            pl.col("_pos") > pl.col("__lpos")
            if self.ordered
            else pl.col("_pos") != pl.col("__lpos")
        )
        hit = hit.filter(later)
        return list(zip(hit["__id"].to_list(), hit["_pos"].to_list(), strict=True))

    def supersede(self, marks: Iterable[tuple[int, str]]) -> int:
        """Store the marks; the letters leave the pending set."""
        marks = list(marks)
        if not marks:
            return 0
        self.state.mark_superseded(marks)
        done = {i for i, _ in marks}
        for table, letters in self._letters().items():
            self._letters()[table] = [x for x in letters if x.id not in done]
        return len(marks)


def _parse(letter: DeadLetter) -> _Letter:
    """A stored letter's key values and position (per-row Python: letters are set aside)."""
    try:
        payload = json.loads(letter.payload)
    except ValueError:
        payload = {}
    values = payload if isinstance(payload, dict) else {}
    position = str(values.get("_pos") or letter.position or "")
    assert letter.id is not None
    return _Letter(letter.id, letter.stage == "target", values, position)


def typed_column(values: list[object], field: pa.Field) -> pa.Array:
    """Letter values typed like the batch's key column (JSON gave them as text or numbers)."""
    try:
        return pa.array(values, type=field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        texts = pa.array([None if v is None else str(v) for v in values], pa.string())
        try:
            return texts.cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return texts
