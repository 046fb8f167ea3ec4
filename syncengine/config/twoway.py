"""Two-way pipelines (``two_way: true``): what ``validate`` refuses, and the two directions.

A two-way pipeline is run as two one-way pipelines that the rest of the engine already knows:

* the **forward** direction keeps the pipeline's name (so a one-way pipeline switched to
  two-way keeps its checkpoint, slot and shadow), reads the source and writes the target;
* the **reverse** direction, named ``<name>.reverse`` (a dot, which no configured pipeline
  name may hold, so it never collides), reads the target tables through its own slot and
  publication (``syncengine_<name>_reverse``) and writes the source tables, with the mapping
  inverted.

Each direction applies under its own replication origin (``syncengine_<name>`` and
``syncengine_<name>_reverse``) and its reader skips the other direction's origin, so a change
crosses once and never comes back (loop prevention at the source, DESIGN.md).

The strategy is said once, about the *sides*, and each direction gets the equivalent in its
own local/remote terms: ``prefer: source`` is ``remote`` forward and ``local`` in reverse;
``timestamp`` and ``merge`` with ``tie: source`` break ties toward the source in both;
``manual`` parks a key for both (:mod:`syncengine.conflicts.twoway_manual`). A strategy whose
two directions would not agree (``local`` or ``remote`` in both) cannot converge and is
refused, as are mappings that cannot be inverted. A Mongo target side: see
:mod:`syncengine.config.twoway_mongo`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncengine.config.mesh import direction_name, mesh_direction, mesh_ident
from syncengine.names import DEFAULT_SCHEMA, QualifiedName

if TYPE_CHECKING:
    from syncengine.config.base import SourceConfigBase, TargetConfigBase
    from syncengine.config.models import (
        Config,
        ConflictsConfig,
        MappingConfig,
        PipelineConfig,
    )
    from syncengine.sources.postgres.config import PostgresSourceConfig

REVERSE_SUFFIX = ".reverse"
#: the origins a person's resolution of a two-way ``manual`` conflict is written under: a dot,
#: which no pipeline name holds, so it is no direction's origin
MANUAL_SUFFIX = ".manual"
#: strategies whose two directions agree on one result (by side), after translation
CONVERGING = ("timestamp", "merge", "manual")
_WHY_NOT = {
    "local": (
        "'local' in both directions keeps each side's own row, so a key edited on both sides "
        "never converges; use prefer: target (or prefer: source)"
    ),
    "remote": (
        "'remote' in both directions makes each side take the other's row, so a key edited on "
        "both sides swaps instead of converging; use prefer: source (or prefer: target)"
    ),
}


def reverse_name(pipeline: str) -> str:
    """The reverse direction's name in state, metrics and ``status``."""
    return pipeline + REVERSE_SUFFIX


def sibling_name(pipeline: str) -> str:
    """The other direction of the two-way pipeline (or the pair of mesh nodes) ``pipeline``
    is a direction of."""
    in_mesh = mesh_direction(pipeline)
    if in_mesh is not None:
        mesh, node, other = in_mesh
        return direction_name(mesh, other, node)
    if pipeline.endswith(REVERSE_SUFFIX):
        return pipeline[: -len(REVERSE_SUFFIX)]
    return reverse_name(pipeline)


def origin_name(pipeline: str) -> str:
    """The replication origin a direction applies under (``orders``, ``orders.reverse``, a
    mesh's ``orders.a>b``)."""
    in_mesh = mesh_direction(pipeline)
    if in_mesh is not None:
        return mesh_ident(*in_mesh)
    if pipeline.endswith(REVERSE_SUFFIX):
        return f"syncengine_{pipeline[: -len(REVERSE_SUFFIX)]}_reverse"
    return f"syncengine_{pipeline}"


def manual_origin_name(pipeline: str) -> str:
    """The origin ``conflicts resolve`` writes a two-way ``manual`` resolution under to the
    target of direction ``pipeline`` (``syncengine_orders.manual``): not the direction's own,
    which the running daemon holds (an origin serves one session at a time, cluster-wide, so
    each side gets its own), and read as an echo by the other direction's reader."""
    return origin_name(pipeline) + MANUAL_SUFFIX


def versions_name(pipeline: str) -> str:
    """What a direction records its rows' versions under (``_syncengine.versions``): its
    own name; in a mesh, the node it writes into (``orders@b``), shared by every direction
    into that node, so the version of a row is the one its last writer recorded, whichever
    node that write came from."""
    in_mesh = mesh_direction(pipeline)
    if in_mesh is not None:
        return f"{in_mesh[0]}@{in_mesh[2]}"
    return pipeline


def directions_of(config: Config, pipeline: str) -> list[str]:
    """The configured pipeline (or mesh) ``pipeline`` as the names that run: itself, and its
    reverse direction when it is two-way; a mesh's directions."""
    if pipeline in config.meshes:
        return [n for n in config.pipelines if (mesh_direction(n) or ("",))[0] == pipeline]
    reverse = reverse_name(pipeline)
    return [pipeline, reverse] if reverse in config.pipelines else [pipeline]


def direction_of(config: Config, pipeline: str) -> str | None:
    """``source->target`` / ``target->source`` for a direction of a two-way pipeline,
    ``a->b`` for a mesh's (what ``status`` shows), None for a one-way pipeline."""
    in_mesh = mesh_direction(pipeline)
    if in_mesh is not None:
        return f"{in_mesh[1]}->{in_mesh[2]}"
    if pipeline.endswith(REVERSE_SUFFIX):
        return "target->source"
    return "source->target" if reverse_name(pipeline) in config.pipelines else None


# -- validation ---------------------------------------------------------------------------


def check_two_way(config: Config) -> list[str]:
    """Every reason a two-way pipeline cannot run, each with its YAML path."""
    problems: list[str] = []
    for name, spec in config.pipelines.items():
        where = f"pipelines.{name}"
        problems += [
            f"{where}.mappings[{i}].twin_table: set by two_way pipelines, not in a config"
            for i, m in enumerate(spec.mappings)
            if m.twin_table is not None
        ]
        if not spec.two_way:
            problems += _one_way_problems(where, spec)
            continue
        problems += _side_problems(where, spec)
        if f"{name}_reverse" in config.pipelines:
            problems.append(
                f"pipelines.{name}_reverse: the name is taken by pipeline {name}'s reverse "
                f"direction (its slot, publication and origin syncengine_{name}_reverse); "
                "rename this pipeline"
            )
        problems += _conflicts_problems(f"{where}.conflicts", spec.conflicts)
        for index, mapping in enumerate(spec.mappings):
            path = f"{where}.mappings[{index}]"
            if mapping.conflicts is not None:
                problems += _conflicts_problems(f"{path}.conflicts", mapping.conflicts)
            problems += _mapping_problems(path, mapping)
            if (mapping.conflicts or spec.conflicts).strategy == "manual":
                problems += _manual_mapping_problems(path, mapping)
    return problems


def _one_way_problems(where: str, spec: PipelineConfig) -> list[str]:
    problems: list[str] = []
    sections = [(f"{where}.conflicts", spec.conflicts)] + [
        (f"{where}.mappings[{i}].conflicts", m.conflicts)
        for i, m in enumerate(spec.mappings)
        if m.conflicts is not None
    ]
    for path, conflicts in sections:
        if conflicts.prefer is not None:
            problems.append(
                f"{path}.prefer: only for two_way pipelines (one-way: strategy remote or local)"
            )
    for i, mapping in enumerate(spec.mappings):
        if mapping.reverse is not None:
            problems.append(f"{where}.mappings[{i}].reverse: only for two_way pipelines")
    return problems


def _side_problems(where: str, spec: PipelineConfig) -> list[str]:
    problems: list[str] = []
    from syncengine.config.twoway_mongo import mongo_problems

    for part in ("source", "target"):
        kind = getattr(spec, part).type
        if kind == "mongo":
            problems += mongo_problems(where, part, spec)
        elif kind != "postgres":
            problems.append(
                f"{where}.{part}.type: two_way needs postgres or mongo sides ('{kind}' "
                "cannot be read back)"
            )
    if spec.source.type == "postgres" and getattr(spec.source, "mode", "cdc") != "cdc":
        problems.append(
            f"{where}.source.mode: two_way needs mode: cdc (polling cannot tell the engine's "
            "own writes from others')"
        )
    return problems


def _conflicts_problems(path: str, conflicts: ConflictsConfig) -> list[str]:
    chosen = conflicts.model_fields_set
    problems: list[str] = []
    if conflicts.prefer is not None:
        if "strategy" in chosen:
            problems.append(
                f"{path}.prefer: give either prefer or strategy (prefer: {conflicts.prefer} "
                "already decides every conflict)"
            )
        return problems
    strategy = conflicts.strategy
    if "strategy" not in chosen:
        problems.append(
            f"{path}.strategy: a two_way pipeline needs a converging strategy: "
            "strategy: timestamp | merge | manual, or prefer: source | target"
        )
    elif strategy in _WHY_NOT:
        problems.append(f"{path}.strategy: {_WHY_NOT[strategy]}")
    elif strategy == "merge" and conflicts.timestamp:
        problems.append(
            f"{path}.timestamp: two_way merge settles a field both sides changed by commit "
            "time (tie: the side named); a timestamp field is not used, remove it"
        )
    elif strategy not in CONVERGING:
        problems.append(
            f"{path}.strategy: '{strategy}' is not known to converge in both directions; "
            "use timestamp, merge, manual or prefer"
        )
    if "tie" in chosen and conflicts.tie in ("local", "remote"):
        problems.append(
            f"{path}.tie: name a side (source | target): '{conflicts.tie}' means the opposite "
            "side in the reverse direction, so ties would not converge"
        )
    return problems


def _mapping_problems(path: str, mapping: MappingConfig) -> list[str]:
    problems: list[str] = []
    reverse = mapping.reverse
    if mapping.filter and (reverse is None or reverse.filter is None):
        problems.append(
            f"{path}.filter: a filter cannot be inverted by itself; add reverse.filter (a "
            "predicate over target columns saying which target rows map back)"
        )
    fields = (mapping.fields or {}).items()
    computed = [name for name, text in fields if copied_column(text, mapping) is None]
    if computed and (reverse is None or not reverse.fields):
        problems.append(
            f"{path}.fields.{computed[0]}: a computed field cannot be inverted; add "
            f"reverse.fields (source column: SQL over target columns) for "
            f"{', '.join(computed)}"
        )
    return problems


def _manual_mapping_problems(path: str, mapping: MappingConfig) -> list[str]:
    """Two-way ``manual`` writes a person's chosen row to both sides as it is: the two tables
    must name their columns alike (no rename, computed field, excluded column or filter)."""
    renamed = [
        name
        for name, text in (mapping.fields or {}).items()
        if copied_column(text, mapping) != name
    ]
    why = (
        "two_way manual writes the chosen row to both sides as it is, so both tables must "
        "have the same columns"
    )
    problems = []
    if renamed:
        problems.append(f"{path}.fields.{renamed[0]}: {why} (no renamed or computed fields)")
    if mapping.exclude:
        problems.append(f"{path}.exclude: {why} (no excluded columns)")
    if mapping.filter:
        problems.append(f"{path}.filter: {why} and rows (no filter)")
    return problems


def copied_column(text: str, mapping: MappingConfig) -> str | None:
    """The source column (dotted path) a field copies, or None for a computed field."""
    from sqlglot import exp

    from syncengine.mappings.errors import ExpressionError
    from syncengine.mappings.parse import parse_expression

    try:
        tree = parse_expression(text, mapping.dialect)
    except ExpressionError:
        return None  # reported by the mapping checks
    if isinstance(tree, exp.Column) and not isinstance(tree.this, exp.Star):
        return ".".join(part.name for part in tree.parts)
    return None


# -- the two directions -------------------------------------------------------------------


def split_two_way(config: Config) -> Config:
    """``config`` with each two-way pipeline replaced by its forward direction and its reverse
    direction added (a checked config: :func:`check_two_way` found nothing)."""
    pipelines: dict[str, PipelineConfig] = {}
    for name, spec in config.pipelines.items():
        if not spec.two_way:
            pipelines[name] = spec
            continue
        pipelines[name] = _forward(name, spec)
        pipelines[reverse_name(name)] = _reverse(name, spec)
    return config.model_copy(update={"pipelines": pipelines})


def twin_table(mapping: MappingConfig) -> str:
    """What the other direction calls ``mapping``'s target table (its own target table is
    this direction's source table): where a two-way ``manual`` conflict of that table parked
    by the other direction is found. The reverse direction's mappings carry it
    (:func:`_inverted`); the forward one's is the name the reverse gives its target."""
    return mapping.twin_table or QualifiedName.parse(mapping.source).sql


def _forward(name: str, spec: PipelineConfig) -> PipelineConfig:
    from syncengine.config.twoway_mongo import two_way_stream
    from syncengine.sources.mongo.config import MongoSourceConfig

    # the reverse direction's writes (and a person's manual resolutions) are echoes here
    echoes = [origin_name(reverse_name(name)), manual_origin_name(reverse_name(name))]
    if isinstance(spec.source, MongoSourceConfig):
        source: SourceConfigBase = two_way_stream(spec.source, echoes)
    else:
        source = spec.source.model_copy(
            update={"own_origins": [*_postgres_source(spec).own_origins, *echoes]}
        )
    # both kinds of target apply under the direction's origin (a Mongo one marks it)
    target = spec.target.model_copy(update={origin_field(spec.target.type): origin_name(name)})
    return spec.model_copy(
        update={
            "source": source,
            "target": target,
            "conflicts": direction_conflicts(spec.conflicts, forward=True),
            "mappings": [_forward_mapping(spec, m) for m in _configured(spec)],
        }
    )


def _configured(spec: PipelineConfig) -> list[MappingConfig]:
    """The forward direction's mappings: as configured; from a Mongo source every
    collection's, the implicit whole-document ones too, so each carries its twin table."""
    return spec.mappings_for_sources() if spec.source.type == "mongo" else spec.mappings


def _forward_mapping(spec: PipelineConfig, mapping: MappingConfig) -> MappingConfig:
    """``mapping`` in the forward direction's terms (its strategy by side; from a Mongo
    source, the reverse's name of its collection: see :func:`twin_table`)."""
    update: dict[str, Any] = {}
    if mapping.conflicts is not None:
        update["conflicts"] = direction_conflicts(mapping.conflicts, forward=True)
    if spec.source.type == "mongo":
        update["twin_table"] = mapping.source  # a collection: no schema to canonicalise
    return mapping.model_copy(update=update) if update else mapping


def origin_field(kind: str) -> str:
    """The target setting a direction's origin goes in: a Mongo target marks its
    transactions, a Postgres one applies under a replication origin."""
    return "origin" if kind == "mongo" else "replication_origin"


def _postgres_source(spec: PipelineConfig) -> PostgresSourceConfig:
    from syncengine.sources.postgres.config import PostgresSourceConfig

    assert isinstance(spec.source, PostgresSourceConfig)
    return spec.source


def _reverse(name: str, spec: PipelineConfig) -> PipelineConfig:
    """The target → source direction: reads the forward target's database (a slot and
    publication of its own on Postgres, a change stream on Mongo) and writes the forward
    source's database under its own origin, with every mapping inverted."""
    from syncengine.config.models import PipelineConfig

    mappings = [inverted_mapping(spec, m) for m in spec.mappings_for_sources()]
    return PipelineConfig(
        source=_reverse_source(name, spec, [m.source for m in mappings]),
        target=_reverse_target(name, spec),
        mappings=mappings,
        conflicts=direction_conflicts(spec.conflicts, forward=False),
        batch=spec.batch,
        # the forward backfill copied the rows: the reverse's only records them
        backfill=spec.backfill.model_copy(update={"copy_rows": False}),
        on_error=spec.on_error,
    )


def _reverse_source(name: str, spec: PipelineConfig, tables: list[str]) -> SourceConfigBase:
    from syncengine.sources.postgres.config import PostgresSourceConfig
    from syncengine.targets.postgres.config import PostgresTargetConfig

    if spec.target.type == "mongo":
        from syncengine.config.twoway_mongo import reverse_mongo_source

        return reverse_mongo_source(name, spec, tables)
    forward_target = spec.target
    assert isinstance(forward_target, PostgresTargetConfig)
    slot = f"syncengine_{name}_reverse"
    # the forward source's reading settings, where it has them (a Mongo one has its own)
    inherited = {
        field: getattr(spec.source, field)
        for field in ("heartbeat", "max_retained_wal_mb", "snapshot_chunk_rows", "query_timeout")
        if field in type(spec.source).model_fields
    }
    return PostgresSourceConfig(
        type="postgres",
        dsn=forward_target.dsn,
        tables=tables,
        slot=slot,
        publication=slot,
        own_origins=[origin_name(name), manual_origin_name(name)],
        **inherited,
    )


def _reverse_target(name: str, spec: PipelineConfig) -> TargetConfigBase:
    from syncengine.targets.postgres.config import PostgresTargetConfig

    if spec.source.type == "mongo":
        from syncengine.config.twoway_mongo import reverse_mongo_target

        return reverse_mongo_target(name, spec)
    return PostgresTargetConfig(
        type="postgres",
        dsn=_postgres_source(spec).dsn,
        schema=DEFAULT_SCHEMA,
        # the reverse direction never changes the source's tables: it writes their columns
        on_schema_change="ignore",
        replication_origin=origin_name(reverse_name(name)),
    )


def inverted_mapping(spec: PipelineConfig, mapping: MappingConfig) -> MappingConfig:
    """The target → source mapping of ``mapping`` (renames inverted, ``reverse`` added)."""
    from syncengine.targets.postgres.config import PostgresTargetConfig

    source = mapping.target_name  # a collection of a Mongo target
    if isinstance(spec.target, PostgresTargetConfig):
        source = QualifiedName.parse(source, spec.target.schema_).sql
    target = mapping.source
    if spec.source.type != "mongo":
        target = QualifiedName.parse(mapping.source).sql
    update: dict[str, Any] = {
        "source": source,
        "target": target,
        "exclude": [],
        "filter": mapping.reverse.filter if mapping.reverse else None,
        "reverse": None,
        "conflicts": direction_conflicts(_reverse_timestamp(spec, mapping), forward=False),
        "twin_table": mapping.target_name,
    }
    renamed: dict[str, str] = {}
    if mapping.fields:
        fields: dict[str, str] = {}
        for target_field, text in mapping.fields.items():
            column = copied_column(text, mapping)
            if column is not None:
                fields[column] = _quoted_path(target_field)
                renamed[column.split(".")[0]] = target_field
        fields.update(mapping.reverse.fields if mapping.reverse else {})
        update["fields"] = fields
    if mapping.key:
        update["key"] = [_source_of(k, mapping) for k in mapping.key]
    return mapping.model_copy(update=update)


def _reverse_timestamp(spec: PipelineConfig, mapping: MappingConfig) -> ConflictsConfig | None:
    """The mapping's conflict setting for the reverse direction: a ``timestamp`` field names a
    target field, which the reverse direction reads back as the source column it came from."""
    conflicts = mapping.conflicts or spec.conflicts
    field = conflicts.timestamp
    if not field or _source_of(field, mapping) == field:
        return mapping.conflicts
    return conflicts.model_copy(update={"timestamp": _source_of(field, mapping)})


def _source_of(key: str, mapping: MappingConfig) -> str:
    """A forward key column (a source column or a target field) as the reverse's target
    column (a source column)."""
    for target_field, text in (mapping.fields or {}).items():
        if target_field == key:
            return copied_column(text, mapping) or key
    return key


def _quoted_path(field: str) -> str:
    """A target field name as an SQL column reference (quoted: it may hold capitals)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in field.split("."))


def direction_conflicts(conflicts: ConflictsConfig | None, forward: bool) -> Any:
    """The side-level setting in the direction's local/remote terms (the source is
    ``remote`` forward and ``local`` in reverse)."""
    if conflicts is None:
        return None
    source_side = "remote" if forward else "local"
    target_side = "local" if forward else "remote"
    sides = {"source": source_side, "target": target_side}
    if conflicts.prefer is not None:
        # the preferred side's row: detected and audited in both directions
        return conflicts.model_copy(
            update={"strategy": sides[conflicts.prefer], "audit": True, "prefer": None}
        )
    tie = conflicts.tie if "tie" in conflicts.model_fields_set else "source"
    return conflicts.model_copy(update={"tie": sides.get(tie, tie)})
