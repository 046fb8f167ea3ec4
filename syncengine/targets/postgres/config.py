"""The ``postgres`` target's config model (``target: {type: postgres, …}``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from syncengine.config.base import TargetConfigBase
from syncengine.names import DEFAULT_SCHEMA, quote


class PostgresTargetConfig(TargetConfigBase):
    type: Literal["postgres"]
    dsn: SecretStr
    schema_: str = Field(DEFAULT_SCHEMA, alias="schema")
    on_schema_change: Literal["add", "ignore", "fail"] = "add"
    """What to do when the source grows a column the target table lacks."""
    replication_origin: str | None = None
    """Apply under this replication origin (created if missing), so a reader of this
    database can tell the engine's writes from others'. Set by two-way pipelines; needs the
    ``pg_replication_origin_*`` privileges (README, *Two-way sync*)."""
    peer_origins: list[str] = Field(default_factory=list)
    """The origins of the engine's other directions writing into this database (set by a
    mesh): a row they wrote last is the engine's, whose version is recorded with it, not a
    person's (:mod:`syncengine.conflicts.versions`)."""

    def default_table(self, bare: str) -> str:
        """Quoted where needed: target names are parsed as SQL (``"T.with.dots"`` must not
        become schema ``T``)."""
        return quote(bare)
