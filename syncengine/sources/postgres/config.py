"""The ``postgres`` source's config model (``source: {type: postgres, …}``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from syncengine.config.base import SourceConfigBase, TableName
from syncengine.config.durations import parse_duration
from syncengine.names import QualifiedName, canonical, table_name_problem


class PostgresSourceConfig(SourceConfigBase):
    type: Literal["postgres"]
    dsn: SecretStr
    """libpq connection string or URI; ``sslmode``/``sslrootcert`` pass through to libpq."""
    tables: list[TableName] = Field(min_length=1)
    """Tables to capture, ``schema.table`` (schema defaults to ``public``), in SQL form
    (``public."Order Items"``, unquoted parts fold to lower case) or raw form
    (``public.Order Items``): see :mod:`syncengine.names`."""
    mode: Literal["cdc", "incremental"] = "cdc"
    """``cdc``: logical replication slot + publication; ``incremental``: poll ``cursor``."""
    cursor: str | None = None
    """Only for ``mode: incremental``: a column that grows on every insert and update."""
    slot: str | None = None
    """Replication slot name; default ``syncengine_<pipeline>``."""
    publication: str | None = None
    """Publication name; default ``syncengine_<pipeline>``."""
    heartbeat: Annotated[float, Field(ge=0)] = 60.0
    """Seconds between ``pg_logical_emit_message`` heartbeats that keep an idle slot moving
    (0 disables)."""
    max_retained_wal_mb: Annotated[int, Field(ge=1)] = 1024
    """Warn when the slot retains more WAL than this."""
    on_history_lost: Literal["fail", "resnapshot"] = "fail"
    """When the slot no longer holds the changes after the checkpoint (dropped, invalidated
    by ``max_slot_wal_keep_size``, or ahead of a target restored from a backup): stop the
    pipeline (``fail``), or copy every table again and sweep what the source no longer has
    (``resnapshot``, :mod:`syncengine.runtime.resync`)."""
    own_origins: list[str] = Field(default_factory=list)
    """Replication origins whose transactions are not read (the engine's own writes in a
    two-way pipeline, set by it; also usable for another replicator's origin)."""
    ignore_origins: list[str] = Field(default_factory=list)
    """Replication origins whose transactions are skipped without a trace: not applied, and
    not taken as echoes either. Set by a mesh on each direction: the other nodes' writes
    into this node, which each node sends to every other itself (:mod:`syncengine.config.mesh`)."""
    snapshot_chunk_rows: Annotated[int, Field(ge=1)] = 100_000
    query_timeout: Annotated[float, Field(gt=0)] = 60.0
    """Seconds a query on an ordinary source connection (catalog, admin, heartbeat) may wait
    for its answer before the connection is presumed lost and the pipeline reconnects; long
    statements (chunk planning) and COPY reads without progress get 10 times that."""

    @field_validator("heartbeat", "query_timeout", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return parse_duration(value)

    @field_validator("tables")
    @classmethod
    def _one_name_per_table(cls, value: list[str]) -> list[str]:
        seen: dict[str, str] = {}
        for table in value:
            first = seen.setdefault(canonical(table), table)
            if first != table:
                raise ValueError(f"'{first}' and '{table}' name the same table")
        return value

    @model_validator(mode="after")
    def _cursor_for_incremental(self) -> PostgresSourceConfig:
        if self.mode == "incremental" and not self.cursor:
            raise ValueError(
                "cursor: required with mode: incremental (a column that grows on change)"
            )
        if self.mode == "cdc" and self.cursor:
            raise ValueError("cursor: only used with mode: incremental")
        return self

    def table_names(self) -> list[str]:
        return self.tables

    def resnapshot_on_history_lost(self) -> bool:
        return self.on_history_lost == "resnapshot"

    def with_table_names(self, names: list[str]) -> PostgresSourceConfig:
        return self.model_copy(update={"tables": list(names)})

    def table_key(self, name: str) -> str:
        """The canonical name (:mod:`syncengine.names`), so both forms of a table agree."""
        return canonical(name)

    def table_name_problem(self, name: str) -> str | None:
        return table_name_problem(name)

    def bare_name(self, name: str) -> str:
        return QualifiedName.parse(name).name

    def positions_sort(self) -> bool:
        """LSNs sort; the cursor values of ``mode: incremental`` polling do not."""
        return self.mode == "cdc"
