"""What every source and target config model has, so generic code never names a concrete kind.

Each kind's model lives in its own folder (``sources/postgres/config.py``, a plugin's package)
and subclasses :class:`SourceConfigBase` or :class:`TargetConfigBase` with ``type:
Literal["<kind>"]``; the pipeline model takes the set of kinds from the registry
(:mod:`syncengine.config.kinds`). The methods below are what the pipeline model, the mapping
defaults and the commands ask of a kind's config; their defaults fit a kind whose names are
plain strings (collections, files).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from syncengine.names import table_name_problem


class Model(BaseModel):
    """Read-only, and an unknown key is an error (a typo is reported, not ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _table_name(text: str) -> str:
    problem = table_name_problem(text)
    if problem:
        raise ValueError(problem)
    return text


TableName = Annotated[str, AfterValidator(_table_name)]
"""A Postgres table in either form of :mod:`syncengine.names` (``schema.table``)."""


class SourceConfigBase(Model):
    """The part of a source config that generic code reads."""

    type: str
    """The kind's registered name (``postgres``, ``mongo``, a plugin's)."""

    def table_names(self) -> list[str]:
        """The tables/collections this source reads, as written in the config."""
        raise NotImplementedError(f"{type(self).__name__} must say which tables it reads")

    def with_table_names(self, names: list[str]) -> SourceConfigBase:
        """This config reading ``names`` instead: a reload compares two configs with the
        tables taken out (a table added to a running pipeline, :mod:`syncengine.runtime.reload`).
        A kind that does not say cannot have a table added without a restart."""
        raise NotImplementedError(f"{type(self).__name__} cannot replace its tables")

    def table_key(self, name: str) -> str:
        """What a table goes by in batches and state (Postgres: its canonical name); raises
        ValueError for a name the kind cannot parse."""
        return name

    def table_name_problem(self, name: str) -> str | None:
        """Why ``name`` (a mapping's ``source``) cannot name a table of this kind, or None."""
        return None

    def bare_name(self, name: str) -> str:
        """The table's name without its schema/database: the default target name."""
        return name.split(".")[-1]

    def positions_sort(self) -> bool:
        """Whether the positions this source produces sort in source order, so the position
        fence may drop a change at or before a key's last applied one."""
        return True

    def resnapshot_on_history_lost(self) -> bool:
        """Whether the daemon answers :class:`~syncengine.errors.HistoryLost` (the source no
        longer has the changes after the checkpoint) with a fresh snapshot instead of
        stopping the pipeline."""
        return False


class TargetConfigBase(Model):
    """The part of a target config that generic code reads."""

    type: str
    """The kind's registered name (``postgres``, ``mongo``, ``parquet``, a plugin's)."""

    def default_table(self, bare: str) -> str:
        """The target table for a mapping that names none, from the source's bare name
        (Postgres quotes it where needed, since it parses target names as SQL)."""
        return bare
