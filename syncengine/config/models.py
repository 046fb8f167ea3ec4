"""Typed, read-only models of the pipeline YAML (the contract in DESIGN.md).

Every model forbids unknown keys, so a typo is reported instead of silently ignored. Secrets
(DSNs, URIs) are ``SecretStr`` and never print. Cross-field rules that need the registries
(strategy names) live here as validators so that ``validate`` reports them with their path.

The ``source:`` and ``target:`` sections are the config models of the kinds registered in
:mod:`syncengine.plugins` (each kind's own folder has its model, e.g.
``sources/postgres/config.py``); the code here reads them only through
:class:`~syncengine.config.base.SourceConfigBase` / ``TargetConfigBase``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from syncengine.config.base import Model, SourceConfigBase, TableName, TargetConfigBase
from syncengine.config.cluster import ClusterConfig
from syncengine.config.durations import parse_duration
from syncengine.config.fanout import FanoutConfig
from syncengine.config.kinds import RegisteredKinds
from syncengine.console.config import ConsoleConfig
from syncengine.lazy import lazy_exports
from syncengine.plugins import (
    SOURCES,
    STRATEGIES,
    TARGETS,
    source_factory,
    target_factory,
    unknown_name_message,
)

if TYPE_CHECKING:
    from syncengine.sources.mongo.config import MongoSourceConfig
    from syncengine.sources.postgres.config import PostgresSourceConfig
    from syncengine.targets.mongo.config import MongoTargetConfig
    from syncengine.targets.parquet.config import ParquetTargetConfig
    from syncengine.targets.postgres.config import PostgresTargetConfig

#: The built-in kinds' models, still importable from here (they live in their kinds' folders;
#: imported on first use, since a kind's config module itself imports this package)
__getattr__ = lazy_exports(
    __name__,
    {
        "PostgresSourceConfig": "syncengine.sources.postgres.config",
        "MongoSourceConfig": "syncengine.sources.mongo.config",
        "PostgresTargetConfig": "syncengine.targets.postgres.config",
        "MongoTargetConfig": "syncengine.targets.mongo.config",
        "ParquetTargetConfig": "syncengine.targets.parquet.config",
    },
)


PIPELINE_NAME = r"^[a-z0-9_]+$"


SourceConfig = Annotated[SourceConfigBase, RegisteredKinds(SOURCES, source_factory)]
"""Any registered source kind's config, chosen by its ``type:`` (a tagged union built from the
``syncengine.sources`` registry, so a plugin's kind is validated like a built-in)."""
TargetConfig = Annotated[TargetConfigBase, RegisteredKinds(TARGETS, target_factory)]
"""Any registered target kind's config, chosen by its ``type:``."""


class ConflictsConfig(Model):
    strategy: str = "remote"
    """local | remote | merge | timestamp | manual, or a plugin's name."""
    timestamp: str | None = None
    """For ``timestamp``: the field compared (default: the source commit time)."""
    tie: Literal["local", "remote", "source", "target"] = "remote"
    """Who wins a timestamp tie, or a field both sides changed under ``merge``. A two-way
    pipeline names a side (``source`` | ``target``; default ``source``): ``local`` and
    ``remote`` change meaning with the direction."""
    prefer: Literal["source", "target"] | None = None
    """Two-way pipelines only: that side wins every conflict, in both directions (instead of
    a ``strategy``)."""
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


class ReverseMappingConfig(Model):
    """The target → source half of a two-way mapping that is not a plain rename."""

    fields: dict[str, str] = Field(default_factory=dict)
    """Source column → SQL expression over target columns, for computed fields (plain renames
    are inverted without it)."""
    filter: str | None = None
    """SQL predicate over target columns: the target rows that map back (the forward
    ``filter``'s counterpart)."""


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
    reverse: ReverseMappingConfig | None = None
    """Two-way pipelines: how target rows map back to the source where renames alone cannot
    say (computed fields, a filter). See README, *Two-way sync*."""
    twin_table: str | None = None
    """Set by two-way pipelines on their reverse direction, not written in a config: the
    forward direction's name of this mapping's source table (``config.twoway.twin_table``)."""

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


class BackfillConfig(Model):
    parallel: Annotated[int, Field(ge=1, le=64)] = 2
    """Snapshot chunks copied at once, each by a worker with its own source and target
    connections (``backfill --parallel N`` overrides it for one run)."""
    copy_rows: bool = True
    """Set by the engine, not in YAML (``validate`` refuses it): false for a direction whose
    snapshot copies nothing and only tells its shadow what the target holds where its stream
    starts (a two-way pipeline's reverse, a mesh's directions out of every node but the
    first), because another direction copied those rows already."""


class PipelineConfig(Model):
    source: SourceConfig
    target: TargetConfig
    mappings: list[MappingConfig] = Field(default_factory=list)
    """Without mappings, every source table maps 1:1 to a target of the same name."""
    conflicts: ConflictsConfig = Field(default_factory=ConflictsConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    backfill: BackfillConfig = Field(default_factory=BackfillConfig)
    on_error: Literal["dead_letter", "fail"] = "dead_letter"
    two_way: bool = False
    """Read and write both sides: changes made at the target flow back to the source
    (``syncengine.config.twoway`` checks and splits it into its two directions)."""
    fanout: FanoutConfig | None = None
    """Publish the changes to a NATS JetStream stream that each target consumes at its own
    pace (``syncengine.config.fanout`` splits the pipeline into its reader and consumers)."""

    @model_validator(mode="after")
    def _mappings_name_configured_sources(self) -> PipelineConfig:
        known = self.source.table_names()
        qualified = {self.source_key(t) for t in known}
        for index, mapping in enumerate(self.mappings):
            problem = self.source.table_name_problem(mapping.source)
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
        known = self.source.table_names()
        mapped = {self.source_key(m.source) for m in self.mappings}
        implicit = [MappingConfig(source=t) for t in known if self.source_key(t) not in mapped]
        return [self._with_target(m) for m in [*self.mappings, *implicit]]

    def source_key(self, name: str) -> str:
        """What a source table/collection goes by in batches and state: the canonical name
        of a Postgres table (:mod:`syncengine.names`); a Mongo collection's own name."""
        return self.source.table_key(name)

    def _with_target(self, mapping: MappingConfig) -> MappingConfig:
        if mapping.target:
            return mapping
        target = self.target.default_table(self.source.bare_name(mapping.source))
        return mapping.model_copy(update={"target": target})


MESH_NODE_NAME = r"^[a-z0-9]+(_[a-z0-9]+)*$"


class MeshNodeConfig(Model):
    dsn: SecretStr
    """libpq connection string or URI of this node's database."""


class MeshConfig(Model):
    """Three or more Postgres databases holding the same tables, each written by people and
    kept equal to the others (README, *Meshes*; :mod:`syncengine.config.mesh` splits it into
    one direction per ordered pair of nodes)."""

    nodes: dict[Annotated[str, Field(pattern=MESH_NODE_NAME)], MeshNodeConfig] = Field(min_length=2)
    """Node name → its database. The first node seeds the others at the first start, and
    wins ties of equal commit times against every node listed after it."""
    tables: list[TableName] = Field(min_length=1)
    """Tables every node holds, same names and columns (``schema.table``)."""
    conflicts: ConflictsConfig = Field(default_factory=ConflictsConfig)
    """``strategy: timestamp`` (by commit time): the only strategy a mesh takes."""
    batch: BatchConfig = Field(default_factory=BatchConfig)
    backfill: BackfillConfig = Field(default_factory=BackfillConfig)
    on_error: Literal["dead_letter", "fail"] = "dead_letter"


class Config(Model):
    state: str = ".syncengine/state.db"
    """Where the engine keeps its state (checkpoints, shadow, conflicts, dead letters): a
    SQLite file path, or a ``postgresql://`` URL for a store every process shares (cluster
    mode's workers, the CLI and the console on any machine)."""
    pipelines: dict[Annotated[str, Field(pattern=PIPELINE_NAME)], PipelineConfig] = Field(
        default_factory=dict
    )
    meshes: dict[Annotated[str, Field(pattern=PIPELINE_NAME)], MeshConfig] = Field(
        default_factory=dict
    )
    """Meshes of Postgres databases (:class:`MeshConfig`); after loading, each runs as the
    pipelines of its directions (``<mesh>.<from>><to>``), which ``pipelines`` then holds."""
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    """The operations console (``syncengine ui``, ``run --ui-port``): its access token."""
    cluster: ClusterConfig | None = None
    """Cluster mode (``syncengine worker`` / ``apply``, docs/cluster.md); None: embedded."""

    @field_validator("state")
    @classmethod
    def _state_is_a_file_or_postgres(cls, value: str) -> str:
        from syncengine.state import SHARED_SCHEMES

        scheme, sep, _ = value.partition("://")
        if sep and not value.startswith(SHARED_SCHEMES):
            raise ValueError(
                f"'{scheme}://' is not a state store; use a file path or a postgresql:// URL"
            )
        return value

    @model_validator(mode="after")
    def _something_to_run(self) -> Config:
        if not self.pipelines and not self.meshes:
            raise ValueError("pipelines: Dictionary should have at least 1 item (or meshes:)")
        return self


def _rebuild() -> None:
    """A kind registered in-process after import joins the unions."""
    FanoutConfig.model_rebuild(force=True)
    PipelineConfig.model_rebuild(force=True)
    Config.model_rebuild(force=True)


SOURCES.on_change(_rebuild)
TARGETS.on_change(_rebuild)

__all__ = [
    "BatchConfig",
    "Config",
    "ConflictsConfig",
    "MappingConfig",
    "MeshConfig",
    "MeshNodeConfig",
    "Model",
    "MongoSourceConfig",
    "MongoTargetConfig",
    "ParquetTargetConfig",
    "PipelineConfig",
    "PostgresSourceConfig",
    "PostgresTargetConfig",
    "SourceConfig",
    "SourceConfigBase",
    "TargetConfig",
    "TargetConfigBase",
]
