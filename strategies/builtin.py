"""The built-in strategies: ``remote`` (default), ``local``, ``timestamp`` and ``manual``.

``merge`` lives in :mod:`syncengine.strategies.merge`. See :mod:`syncengine.strategies.base`
for the frames a strategy receives.
"""

from __future__ import annotations

import polars as pl
from syncengine.strategies.base import (
    EXISTS,
    REMOTE,
    SIDE,
    Decision,
    StrategyContext,
    flags,
    labels,
    pick,
)


class _WholeSide:
    """Every conflicting row takes one side whole (or is parked)."""

    name = ""
    side = "remote"
    park = False
    label = ""

    def decide(
        self, base: pl.DataFrame, local: pl.DataFrame, remote: pl.DataFrame, ctx: StrategyContext
    ) -> Decision:
        n = remote.height
        rows = pick(remote if self.side == "remote" else local, ctx)
        return Decision(rows, flags(self.park, n), labels(self.label or self.side, n))


class RemoteStrategy(_WholeSide):
    """The source wins. Conflicts are still counted, logged and audited."""

    name = side = "remote"


class LocalStrategy(_WholeSide):
    """The target wins: the incoming change is skipped (and audited)."""

    name = side = "local"


class ManualStrategy(_WholeSide):
    """Every conflict is parked for a person (``syncengine conflicts``)."""

    name, side, park, label = "manual", "local", True, "parked"


class TimestampStrategy:
    """The newer side wins; ties go to ``tie``.

    With ``timestamp: FIELD`` both sides' FIELD are compared; a remote row without it (a
    delete) uses its commit time when FIELD holds times. Without ``timestamp`` the source commit
    time is compared with nothing on the target side, so the source wins. A side without a time
    (a row deleted at the target, a null FIELD) is older than any time; two missing times tie.

    Two-way (both frames carry ``_side``: versions, syncengine.conflicts.versions): the later
    commit wins, deletes included; equal times go to the ``tie`` side; an unknown target
    version loses to a change and wins against an echo (:func:`newer_version`).
    """

    name = "timestamp"

    def decide(
        self, base: pl.DataFrame, local: pl.DataFrame, remote: pl.DataFrame, ctx: StrategyContext
    ) -> Decision:
        if SIDE in local.columns and SIDE in remote.columns and ctx.config.timestamp is None:
            remote_wins = newer_version(
                local[ctx.commit_time], local[SIDE], remote[ctx.commit_time], remote[SIDE],
                ctx.config.tie,
            )  # fmt: skip
            return _take(local, remote, remote_wins, ctx)
        local_time, remote_time = _times(local, remote, ctx)
        newer_remote = pl.select(
            pl.when(local_time.is_null() & remote_time.is_null())
            .then(None)
            .when(local_time.is_null())
            .then(True)
            .when(remote_time.is_null())
            .then(False)
            .when(remote_time == local_time)
            .then(None)
            .otherwise(remote_time > local_time)
        ).to_series()
        remote_wins = newer_remote.fill_null(ctx.config.tie == "remote")
        return _take(local, remote, remote_wins, ctx)


def _take(
    local: pl.DataFrame, remote: pl.DataFrame, remote_wins: pl.Series, ctx: StrategyContext
) -> Decision:
    """Per row the remote row where ``remote_wins``, else the local one."""
    rows = pick(local, ctx).select(
        pl.when(remote_wins).then(remote[c]).otherwise(pl.col(c)).alias(c)
        for c in (*ctx.columns, EXISTS)
    )
    outcome = pl.select(
        pl.when(remote_wins).then(pl.lit("remote")).otherwise(pl.lit("local"))
    ).to_series()
    return Decision(rows, flags(False, local.height), outcome.alias("outcome"))


def _times(
    local: pl.DataFrame, remote: pl.DataFrame, ctx: StrategyContext
) -> tuple[pl.Series, pl.Series]:
    field = ctx.config.timestamp
    commit = remote[ctx.commit_time] if ctx.commit_time in remote.columns else None
    if field is None or field not in local.columns:
        nothing = pl.Series([None] * local.height, dtype=pl.Datetime("us", "UTC"))
        return nothing, commit if commit is not None else nothing
    local_time = pl.select(pl.when(local[EXISTS]).then(local[field])).to_series()
    remote_time = pl.select(pl.when(remote[EXISTS]).then(remote[field])).to_series()
    if local_time.dtype.is_temporal():
        local_time = _utc(local_time)
        remote_time = _utc(remote_time)
        if commit is not None:
            remote_time = remote_time.fill_null(_utc(commit))
    return local_time, remote_time


def newer_version(
    local_time: pl.Series,
    local_side: pl.Series,
    remote_time: pl.Series,
    remote_side: pl.Series,
    tie: str,
) -> pl.Series:
    """Per row: the incoming version (time, side) is newer than the target's. A null target
    time (unknown: a delete the direction was not told the time of) loses to a change (side
    ``remote``) and wins against an echo (side ``local``); equal times and sides are one write."""
    frame = pl.DataFrame(
        {"lt": _utc(local_time), "ls": local_side, "rt": _utc(remote_time), "rs": remote_side}
    )
    lt, ls, rt, rs = pl.col("lt"), pl.col("ls"), pl.col("rt"), pl.col("rs")
    return frame.select(
        pl.when(lt.is_null())
        .then(rs == REMOTE)
        .when(rt.is_null())
        .then(False)
        .when(rt != lt)
        .then(rt > lt)
        .when(rs == ls)
        .then(False)
        .otherwise(rs == tie)
        .fill_null(False)
        .alias("newer")
    ).to_series()


def _utc(times: pl.Series) -> pl.Series:
    """Times as UTC microsecond datetimes (naive values are taken to be UTC)."""
    if isinstance(times.dtype, pl.Datetime):
        if times.dtype.time_zone is None:
            return times.dt.cast_time_unit("us").dt.replace_time_zone("UTC")
        return times.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    return times.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
