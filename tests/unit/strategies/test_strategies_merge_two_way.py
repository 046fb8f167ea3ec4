"""Two-way ``merge``: a field-level merge of a real concurrent edit, clashes to the newer write,
the same row whichever direction decides; deletes and untouched targets by version (no
server)."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from syncengine.strategies import EXISTS, StrategyContext, load_strategy
from syncengine.strategies.base import LOCAL, REMOTE, SIDE

from syncengine.config.models import ConflictsConfig

UTC_US = pl.Datetime("us", "UTC")
COLUMNS = ("id", "a", "b", "c")
SCHEMA = {"id": pl.Int64, "a": pl.String, "b": pl.String, "c": pl.String, EXISTS: pl.Boolean}


def frame(row: dict | None, second: int | None = None, side: str | None = None) -> pl.DataFrame:
    values = {"id": 1, "a": None, "b": None, "c": None, EXISTS: row is not None, **(row or {})}
    out = pl.DataFrame([values], schema=SCHEMA)
    if side is None:
        return out
    when = None if second is None else datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC)
    return out.with_columns(pl.lit(when, dtype=UTC_US).alias("_ts"), pl.lit(side).alias(SIDE))


def decide(base, local, remote, tie: str = "remote"):
    ctx = StrategyContext(ConflictsConfig(strategy="merge", tie=tie), ("id",), COLUMNS)
    decision = load_strategy("merge").decide(base, local, remote, ctx)
    row = decision.rows.row(0, named=True)
    return (row if row[EXISTS] else None), decision.outcome[0]


BASE = {"a": "a0", "b": "b0", "c": "c0"}
SOURCE = {"a": "a-src", "b": "b0", "c": "c-src"}  # a and c changed at the source
TARGET = {"a": "a0", "b": "b-tgt", "c": "c-tgt"}  # b and c changed at the target


@pytest.mark.parametrize("later", ["source", "target"])
def test_fields_merge_and_a_clash_goes_to_the_later_commit_in_both_directions(later):
    src_time, tgt_time = (20, 10) if later == "source" else (10, 20)
    # forward: the source's change arrives (remote), the target row is local
    forward, outcome = decide(
        frame(BASE), frame(TARGET, tgt_time, LOCAL), frame(SOURCE, src_time, REMOTE)
    )
    # reverse: the target's change arrives (remote), the source row is local; ties flip
    reverse, _ = decide(
        frame(BASE), frame(SOURCE, src_time, LOCAL), frame(TARGET, tgt_time, REMOTE), tie="local"
    )
    assert outcome == "merged"
    assert forward == reverse, "both directions must write the same row"
    assert forward is not None
    assert (forward["a"], forward["b"]) == ("a-src", "b-tgt")
    assert forward["c"] == ("c-src" if later == "source" else "c-tgt")


def test_equal_commit_times_go_to_the_tie_side():
    row, _ = decide(frame(BASE), frame(TARGET, 10, LOCAL), frame(SOURCE, 10, REMOTE), tie="local")
    assert row is not None and row["c"] == "c-tgt"


@pytest.mark.parametrize(("update_at", "delete_at"), [(20, 10), (10, 20)])
def test_update_against_delete_is_whole_row_by_commit_time(update_at, delete_at):
    row, outcome = decide(
        frame(BASE), frame(None, delete_at, LOCAL), frame(SOURCE, update_at, REMOTE)
    )
    if update_at > delete_at:
        assert (row, outcome) == ({"id": 1, **SOURCE, EXISTS: True}, "remote")
    else:
        assert (row, outcome) == (None, "local")


def test_a_target_unchanged_since_the_base_is_not_merged_with_an_older_change():
    # an older source image arriving late over a target that holds the base: by version, as
    # timestamp (applying it would take the key back in time)
    row, outcome = decide(frame(BASE), frame(BASE, 20, LOCAL), frame(SOURCE, 10, REMOTE))
    assert (row, outcome) == ({"id": 1, **BASE, EXISTS: True}, "local")
    row, outcome = decide(frame(BASE), frame(BASE, 10, LOCAL), frame(SOURCE, 20, REMOTE))
    assert (row, outcome) == ({"id": 1, **SOURCE, EXISTS: True}, "remote")


def test_a_newer_change_that_merges_into_the_target_row_is_taken_whole():
    # the base lagged: by it, the newer source row's only change (a) is already in the target
    # row, so the merge is the target row and nothing would be written; the other direction,
    # from its own base, can conclude the same about its side. Whole-row instead (timestamp).
    lagging = {"a": "a0", "b": "b0", "c": "c-old"}
    target = {"a": "a-src", "b": "b0", "c": "c-tgt"}
    source = {"a": "a-src", "b": "b0", "c": "c-old"}
    row, outcome = decide(frame(lagging), frame(target, 10, LOCAL), frame(source, 20, REMOTE))
    assert (row, outcome) == ({"id": 1, **source, EXISTS: True}, "remote")
