"""Two-way ``timestamp``: versions (commit time, side) decide every change, deletes included,
and both directions agree (no server)."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from syncengine.strategies import EXISTS, StrategyContext, load_strategy
from syncengine.strategies.base import LOCAL, REMOTE, SIDE
from syncengine.strategies.builtin import newer_version

from syncengine.config.models import ConflictsConfig
from syncengine.conflicts.versions import recorded_rows, target_versions

UTC_US = pl.Datetime("us", "UTC")


def at(second: int | None) -> datetime | None:
    return None if second is None else datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC)


def times(*seconds: int | None) -> pl.Series:
    return pl.Series([at(s) for s in seconds], dtype=UTC_US)


def sides(*names: str | None) -> pl.Series:
    return pl.Series(list(names), dtype=pl.String)


def test_later_time_wins_whatever_the_operation_and_ties_go_to_the_tie_side():
    newer = newer_version(
        times(10, 30, 20, 20, 20),
        sides(LOCAL, LOCAL, LOCAL, REMOTE, LOCAL),
        times(20, 20, 20, 20, 20),
        sides(REMOTE, REMOTE, REMOTE, REMOTE, REMOTE),
        tie=REMOTE,
    )
    # later remote, earlier remote, equal times (tie: remote), the same write, tie again
    assert newer.to_list() == [True, False, True, False, True]
    tied = newer_version(times(20), sides(LOCAL), times(20), sides(REMOTE), tie=LOCAL)
    assert tied.to_list() == [False]


def test_an_unknown_target_version_loses_to_a_change_and_wins_against_an_echo():
    # a change over a delete the direction was not told the time of: provisionally applied;
    # an echo (a row that came from the target) is written back only when known newer
    newer = newer_version(
        times(None, None, 10), sides(None, None, REMOTE), times(5, 5, 20),
        sides(REMOTE, LOCAL, LOCAL), tie=REMOTE,
    )  # fmt: skip
    assert newer.to_list() == [True, False, True]


def test_both_directions_decide_alike():
    """The same pair of writes met from either side: one winner (by side), deletes included."""
    for t_source, t_target in [(10, 20), (20, 10), (15, 15)]:
        for tie in ("source", "target"):
            # forward: source = remote; reverse: target = remote (tie translated per direction)
            forward = newer_version(
                times(t_target), sides(LOCAL), times(t_source), sides(REMOTE),
                tie=REMOTE if tie == "source" else LOCAL,
            )[0]  # fmt: skip
            reverse = newer_version(
                times(t_source), sides(LOCAL), times(t_target), sides(REMOTE),
                tie=LOCAL if tie == "source" else REMOTE,
            )[0]  # fmt: skip
            source_wins = forward
            assert reverse == (not source_wins), (t_source, t_target, tie)
            expected = t_source > t_target or (t_source == t_target and tie == "source")
            assert source_wins == expected


def test_target_versions_by_who_wrote_the_row():
    row_key = pl.Series(["a", "b", "c", "d", "e"])
    exists = pl.Series([True, True, False, False, True])
    commits = pl.DataFrame(
        {
            "row_key": ["a", "b", "e"],
            "_ts": [at(50), at(50), at(40)],
            "_mine": [False, True, True],
        },
        schema={"row_key": pl.String, "_ts": UTC_US, "_mine": pl.Boolean},
    )
    recorded = pl.DataFrame(
        {
            "row_key": ["b", "c", "d"],
            "ts": [at(12), at(30), at(33)],
            "side": [REMOTE, REMOTE, LOCAL],
            "deleted": [False, True, False],
        },
        schema={"row_key": pl.String, "ts": UTC_US, "side": pl.String, "deleted": pl.Boolean},
    )
    got = target_versions(row_key, exists, commits, recorded)
    # a: a person's row (its commit); b: this direction's row (its own recorded time, not the
    # apply's); c: a delete it applied (a tombstone); d: deleted by a person (unknown);
    # e: its row with nothing recorded (the apply's commit time)
    assert got["_ts"].to_list() == [at(50), at(12), at(30), None, at(40)]
    assert got[SIDE].to_list() == [LOCAL, REMOTE, REMOTE, None, REMOTE]
    # d again, against the changes being decided: the very write recorded for d (time 33,
    # side local) replayed after a failed group is that write, not a change over an unknown
    # delete; another change to d still meets the unknown delete
    replay = target_versions(
        row_key, exists, commits, recorded, (times(1, 1, 1, 33, 1), LOCAL, recorded)
    )
    assert replay["_ts"].to_list() == [at(50), at(12), at(30), at(33), at(40)]
    assert replay[SIDE].to_list() == [LOCAL, REMOTE, REMOTE, LOCAL, REMOTE]
    other = target_versions(
        row_key, exists, commits, recorded, (times(1, 1, 1, 34, 1), LOCAL, recorded)
    )
    assert other["_ts"].to_list()[3] is None
    # in a mesh the node's record (d: another direction's later row, since deleted) is not
    # this direction's own: the replay is recognised by its own record
    node = recorded.with_columns(
        pl.when(pl.col("row_key") == "d").then(at(40)).otherwise(pl.col("ts")).alias("ts")
    )
    mesh = target_versions(row_key, exists, commits, node, (times(1, 1, 1, 33, 1), LOCAL, recorded))
    assert mesh["_ts"].to_list()[3] == at(33)
    # and the replay is judged the same write: not applied again
    assert not newer_version(
        replay["_ts"][3:4], replay[SIDE][3:4], times(33), sides(LOCAL), REMOTE
    ).any()


def test_recorded_rows_only_for_written_keys():
    table = recorded_rows(
        pl.Series(["a", "b", "c"]), times(1, 2, 3), REMOTE,
        pl.Series([True, False, True]), pl.Series([True, True, False]),
    )  # fmt: skip
    assert table.column("row_key").to_pylist() == ["a", "b"]
    assert table.column("deleted").to_pylist() == [False, True]
    assert table.column("side").to_pylist() == [REMOTE, REMOTE]


@pytest.mark.parametrize("remote_exists", [True, False])
def test_timestamp_strategy_uses_versions_when_both_frames_carry_sides(remote_exists):
    columns = ("id", "name")
    ctx = StrategyContext(ConflictsConfig(strategy="timestamp"), ("id",), columns)
    schema = {"id": pl.Int64, "name": pl.String, EXISTS: pl.Boolean}
    local = pl.DataFrame([{"id": 1, "name": "t", EXISTS: True}], schema=schema).with_columns(
        pl.lit(at(20), dtype=UTC_US).alias("_ts"), pl.lit(LOCAL).alias(SIDE)
    )
    remote = pl.DataFrame(
        [{"id": 1, "name": "s" if remote_exists else None, EXISTS: remote_exists}], schema=schema
    ).with_columns(pl.lit(at(30), dtype=UTC_US).alias("_ts"), pl.lit(REMOTE).alias(SIDE))
    decision = load_strategy("timestamp").decide(local, local, remote, ctx)
    # the later write wins, a delete as much as an update (no update-beats-delete rule)
    assert decision.outcome.to_list() == ["remote"]
    assert decision.rows[EXISTS].to_list() == [remote_exists]
    older = remote.with_columns(pl.lit(at(10), dtype=UTC_US).alias("_ts"))
    assert load_strategy("timestamp").decide(local, local, older, ctx).outcome.to_list() == [
        "local"
    ]
