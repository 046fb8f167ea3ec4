"""Typed, read-only models of the pipeline YAML (the contract in DESIGN.md).

Every model forbids unknown keys, so a typo is reported instead of silently ignored. Secrets
(DSNs, URIs) are ``SecretStr`` and never print. Cross-field rules that need the registries
(strategy names) live here as validators so that ``validate`` reports them with their path.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from syncengine.config.durations import parse_duration
from syncengine.names import DEFAULT_SCHEMA, canonical, default_target, table_name_problem
from syncengine.plugins import STRATEGIES, unknown_name_message

PIPELINE_NAME = r"^[a-z0-9_]+$"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _table_name(text: str) -> str:
    problem = table_name_problem(text)
    if problem:
        raise ValueError(problem)
    return text


class PostgresSourceConfig(Model):
    type: Literal["postgres"]
    dsn: SecretStr
    """libpq connection string or URI; ``sslmode``/``sslrootcert`` pass through to libpq."""
    tables: list[Annotated[str, AfterValidator(_table_name)]] = Field(min_length=1)
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


class MongoSourceConfig(Model):
    type: Literal["mongo"]
    uri: SecretStr
    """MongoDB connection URI; ``tls=true``, ``tlsCAFile=…`` pass through to PyMongo."""
    database: str
    collections: list[str] = Field(min_length=1)
    full_document: Literal["updateLookup", "whenAvailable", "required"] = "updateLookup"
    before_images: bool = False
    """Ask for ``fullDocumentBeforeChange`` (the collection needs pre-images enabled)."""
    on_history_lost: Literal["resnapshot", "fail"] = "resnapshot"
    snapshot_chunk_docs: Annotated[int, Field(ge=1)] = 50_000
    query_timeout: Annotated[float, Field(gt=0)] = 60.0
    """Seconds one round trip to the source (a command, a cursor batch, a change-stream poll)
    may wait for its answer before the connection is presumed lost (PyMongo's
    ``socketTimeoutMS``; ``socketTimeoutMS``/``timeoutMS`` in the URI take precedence)."""

    @field_validator("query_timeout", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return parse_duration(value)


class PostgresTargetConfig(Model):
    type: Literal["postgres"]
    dsn: SecretStr
    schema_: str = Field(DEFAULT_SCHEMA, alias="schema")
    on_schema_change: Literal["add", "ignore", "fail"] = "add"
    """What to do when the source grows a column the target table lacks."""


class MongoTargetConfig(Model):
    type: Literal["mongo"]
    uri: SecretStr
    database: str


class ParquetTargetConfig(Model):
    type: Literal["parquet"]
    path: str


SourceConfig = Annotated[PostgresSourceConfig | MongoSourceConfig, Field(discriminator="type")]
TargetConfig = Annotated[
    PostgresTargetConfig | MongoTargetConfig | ParquetTargetConfig, Field(discriminator="type")
]


class ConflictsConfig(Model):
    strategy: str = "remote"
    """local | remote | merge | timestamp | manual, or a plugin's name."""
    timestamp: str | None = None
    """For ``timestamp``: the field compared (default: the source commit time)."""
    tie: Literal["local", "remote"] = "remote"
    """Who wins a timestamp tie, or a field both sides changed under ``merge``."""
    audit: bool = False
    """``remote`` only: still read the target rows back to detect, count, log and audit the
    hand edits it overwrites (and skip echoes). Off by default: ``remote`` then reads nothing
    back and keeps only the position fence (docs/conflicts.md). Other strategies always do."""

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        if value not in STRATEGIES:
            raise ValueError(unknown_name_message(value, "strategy", STRATEGIES.names()))
        return value


class MappingConfig(Model):
    source: str
    """Source table (``schema.table``, either form of :mod:`syncengine.names`) or collection."""
    target: str | None = None
    """Target table/collection; default: the source name without its schema. A Postgres
    target reads it like a source table (``schema.table`` or a table in ``target.schema``;
    unquoted parts fold to lower case); Mongo and Parquet targets take it as written."""
    key: list[str] | None = None
    """Key columns; default: the primary key / ``_id``."""
    fields: dict[str, str] | None = None
    """Target field → SQL expression over source fields. Without it every field passes."""
    exclude: list[str] = Field(default_factory=list)
    filter: str | None = None
    """SQL predicate; the target mirrors exactly the source rows that match it."""
    flatten: bool = False
    dialect: str = "postgres"
    """sqlglot dialect of ``fields`` and ``filter``."""
    conflicts: ConflictsConfig | None = None
    """Per-mapping override of the pipeline's conflict strategy."""

    @property
    def target_name(self) -> str:
        """``target``; set by :meth:`PipelineConfig.mappings_for_sources` when not written."""
        return self.target or self.source.split(".")[-1]


class BatchConfig(Model):
    max_rows: Annotated[int, Field(ge=1)] = 10_000
    max_wait: float = 0.5
    """Seconds (or ``500ms``, ``2s``) to wait for a batch to fill."""
    timeout: float = 300.0
    """A batch that takes longer to map, resolve and apply means a connection went silent:
    the pipeline reconnects and retries from the checkpoint."""

    @field_validator("max_wait", "timeout", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return parse_duration(value)


class PipelineConfig(Model):
    source: SourceConfig
    target: TargetConfig
    mappings: list[MappingConfig] = Field(default_factory=list)
    """Without mappings, every source table maps 1:1 to a target of the same name."""
    conflicts: ConflictsConfig = Field(default_factory=ConflictsConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    on_error: Literal["dead_letter", "fail"] = "dead_letter"

    @model_validator(mode="after")
    def _mappings_name_configured_sources(self) -> PipelineConfig:
        known = (
            self.source.tables
            if isinstance(self.source, PostgresSourceConfig)
            else self.source.collections
        )
        qualified = {self.source_key(t) for t in known}
        for index, mapping in enumerate(self.mappings):
            problem = isinstance(self.source, PostgresSourceConfig) and table_name_problem(
                mapping.source
            )
            if problem:
                raise ValueError(f"mappings[{index}].source: {problem}")
            if self.source_key(mapping.source) not in qualified:
                raise ValueError(
                    f"mappings[{index}].source: '{mapping.source}' is not one of the source's "
                    f"tables/collections ({', '.join(known)})"
                )
        return self

    def mappings_for_sources(self) -> list[MappingConfig]:
        """The configured mappings, plus an identity mapping for every unmapped source."""
        known = (
            self.source.tables
            if isinstance(self.source, PostgresSourceConfig)
            else self.source.collections
        )
        mapped = {self.source_key(m.source) for m in self.mappings}
        implicit = [MappingConfig(source=t) for t in known if self.source_key(t) not in mapped]
        return [self._with_target(m) for m in [*self.mappings, *implicit]]

    def source_key(self, name: str) -> str:
        """What a source table/collection goes by in batches and state: the canonical name
        of a Postgres table (:mod:`syncengine.names`); a Mongo collection's own name."""
        if isinstance(self.source, PostgresSourceConfig):
            return canonical(name)
        return name

    def _with_target(self, mapping: MappingConfig) -> MappingConfig:
        if mapping.target:
            return mapping
        target = default_target(
            mapping.source,
            isinstance(self.source, PostgresSourceConfig),
            isinstance(self.target, PostgresTargetConfig),
        )
        return mapping.model_copy(update={"target": target})


class Config(Model):
    state: str = ".syncengine/state.db"
    """SQLite state file (checkpoints, shadow, conflicts, dead letters)."""
    pipelines: dict[Annotated[str, Field(pattern=PIPELINE_NAME)], PipelineConfig] = Field(
        min_length=1
    )
