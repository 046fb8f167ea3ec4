"""The conflict strategy interface: aligned frames in, one decision per row out.

A strategy sees only the rows that conflict, as three aligned Polars frames with the target
table's columns and a boolean ``_exists`` column (the row is present on that side):

* ``base``: the source's version of the row as this pipeline last applied it (the shadow);
  ``_exists`` false when the pipeline never wrote the key (a conflict on insert);
* ``local``: the target row now (``_exists`` false: deleted at the target);
* ``remote``: the incoming change as a full row (``_exists`` false: a delete), plus ``_op``
  and the source commit time ``_ts``.

It returns, per row, the row to write (``_exists`` false: delete it), whether to park the row
in the conflict queue instead, and an outcome label for metrics and the audit log. Strategies are
vectorized: Polars expressions over whole columns, no Python loop over rows (nested JSON merges
may loop over the few rows where both sides changed the same document).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import polars as pl

from syncengine.config.models import ConflictsConfig
from syncengine.errors import ConfigError
from syncengine.plugins import STRATEGIES

EXISTS = "_exists"
COMMIT_TIME = "_ts"
SIDE = "_side"
"""Two-way ``timestamp``: column of ``local`` and ``remote`` saying whose write each side's
version is (``remote``: the direction's source, ``local``: its target); see
syncengine.conflicts.versions."""
REMOTE, LOCAL = "remote", "local"
MERGED = "merged"
"""The outcome of a row both sides contributed fields to (``merge``)."""


@dataclass(frozen=True)
class StrategyContext:
    """What a strategy may need besides the rows."""

    config: ConflictsConfig
    key: tuple[str, ...]
    columns: tuple[str, ...]
    """The table's data columns, key included, in table order."""
    json_columns: frozenset[str] = field(default_factory=frozenset)
    """String columns holding JSON documents (merged field by field by ``merge``)."""
    table: str = ""
    commit_time: str = COMMIT_TIME
    """Column of ``remote`` with the source commit time."""


@dataclass(frozen=True)
class Decision:
    rows: pl.DataFrame
    """Per row: the columns to write and ``_exists`` (false: the key is deleted)."""
    park: pl.Series
    """Per row: true to park the conflict for a person instead of writing."""
    outcome: pl.Series
    """Per row: a short label (``remote``, ``local``, ``merged``, ``parked``, …)."""


@runtime_checkable
class ConflictStrategy(Protocol):
    name: str

    def decide(
        self, base: pl.DataFrame, local: pl.DataFrame, remote: pl.DataFrame, ctx: StrategyContext
    ) -> Decision: ...


def pick(side: pl.DataFrame, ctx: StrategyContext) -> pl.DataFrame:
    """The rows of one side, as a decision's ``rows``."""
    return side.select(*ctx.columns, EXISTS)


def labels(value: str, height: int) -> pl.Series:
    return pl.repeat(value, height, dtype=pl.String, eager=True).alias("outcome")


def flags(value: bool, height: int) -> pl.Series:
    return pl.repeat(value, height, dtype=pl.Boolean, eager=True).alias("park")


def load_strategy(name: str) -> ConflictStrategy:
    """The strategy registered under ``name`` (built-in, entry point or registered object)."""
    found = STRATEGIES.get(name)
    strategy = found() if isinstance(found, type) else found
    if not isinstance(strategy, ConflictStrategy):
        raise ConfigError(
            [f"strategy '{name}' ({found!r}) does not implement ConflictStrategy "
             "(a name and decide(base, local, remote, ctx))"]
        )  # fmt: skip
    return strategy
