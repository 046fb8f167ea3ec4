"""Meshes (``meshes:``): N Postgres databases holding the same tables, all of them written.

A mesh is what pgEdge Spock and pglogical users build by subscribing every node to every
other: here it is said once, as its nodes and tables, and runs as one *direction* per ordered
pair of nodes, ``<mesh>.<from>><to>`` (``orders.a>b``), each a one-way pipeline the rest of
the engine already knows, paired with its sibling ``orders.b>a`` exactly like the two
directions of a ``two_way`` pipeline (echoes, versions, corrections: README, *Two-way sync*).

Loop prevention. Each direction applies under its own replication origin
(``syncengine_<mesh>__<from>__<to>``; also its slot and publication on the ``from`` node).
A reader of node A for direction ``a>b`` meets three kinds of transactions:

* a person's: read and sent to B;
* its sibling's (``b>a``, rows that came from B): an *echo*, never applied, it only keeps
  that pair's bookkeeping right (the shadow, and under ``timestamp`` the correction of a row
  written provisionally over a delete);
* another node's direction into A (``c>a``): skipped without a trace (``ignore_origins``).
  C sends that change to B itself, through ``c>b``; sending it on from A too would apply it
  twice at B (and around the mesh again). Spock's ``forward_origins: {}``.

So a change made at A reaches every other node once, by its direct link.

Conflicts converge by last writer wins on commit time (``timestamp``): every direction into
a node records the versions of the rows it writes under the node (``<mesh>@<node>``, see
:func:`syncengine.config.twoway.versions_name`), and the rows written by any direction into
the node count as the engine's (``peer_origins``), so a row carried in from C is judged by
C's own commit time wherever it lands. Ties of equal commit times go to the node listed first.
``prefer`` is refused: a node's row may be a third node's change carried in, and a pair cannot
tell whose it is, so "A wins" would not mean the same thing on every link.

The first node seeds the others: its directions copy its rows at the first start; every other
direction's snapshot only records what its target holds (``backfill.copy_rows: false``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from syncengine.config.models import Config, MeshConfig, PipelineConfig

ARROW = ">"


def direction_name(mesh: str, node: str, other: str) -> str:
    """The direction of ``mesh`` from ``node`` to ``other`` (``orders.a>b``)."""
    return f"{mesh}.{node}{ARROW}{other}"


def mesh_direction(pipeline: str) -> tuple[str, str, str] | None:
    """(mesh, from node, to node) of a mesh direction's name, None for any other pipeline
    (configured names hold no ``.``, mesh and node names no ``>``)."""
    mesh, dot, pair = pipeline.partition(".")
    node, arrow, other = pair.partition(ARROW)
    if not dot or not arrow:
        return None
    return mesh, node, other


def mesh_ident(mesh: str, node: str, other: str) -> str:
    """The slot, publication and replication origin of a direction (node names hold no
    ``__``, so two directions never share one)."""
    return f"syncengine_{mesh}__{node}__{other}"


# -- validation ---------------------------------------------------------------------------


def check_meshes(config: Config) -> list[str]:
    """Every reason a mesh cannot run, each with its YAML path."""
    problems: list[str] = []
    taken = {f"syncengine_{name}" for name in config.pipelines}
    taken |= {f"syncengine_{name}_reverse" for name in config.pipelines}
    for name, mesh in config.meshes.items():
        where = f"meshes.{name}"
        if name in config.pipelines:
            problems.append(f"{where}: a pipeline has this name; rename one of them")
        problems += _conflicts_problems(f"{where}.conflicts", mesh)
        if "copy_rows" in mesh.backfill.model_fields_set:
            problems.append(f"{where}.backfill.copy_rows: set by the engine, not in the config")
        seen: dict[str, str] = {}
        for node, member in mesh.nodes.items():
            dsn = member.dsn.get_secret_value()
            if dsn in seen:
                problems.append(
                    f"{where}.nodes.{node}.dsn: the same database as node {seen[dsn]}; "
                    "every node must be its own database"
                )
            seen.setdefault(dsn, node)
        for node in mesh.nodes:
            for other in mesh.nodes:
                ident = mesh_ident(name, node, other)
                if node != other and ident in taken:
                    problems.append(
                        f"{where}.nodes.{node}: its direction to {other} needs the slot and "
                        f"origin {ident}, which a pipeline's name takes; rename one of them"
                    )
    for name, spec in config.pipelines.items():
        if "copy_rows" in spec.backfill.model_fields_set:
            problems.append(
                f"pipelines.{name}.backfill.copy_rows: set by the engine, not in the config"
            )
    return problems + _ring_problems(config)


def _ring_problems(config: Config) -> list[str]:
    """A table of one database written back by two two-way pipelines (or a pipeline and a
    mesh): they would form a chain or a ring, where each link forwards the other's changes
    (and a ring sends them round for ever). A mesh says the whole topology at once."""
    from syncengine.names import QualifiedName, canonical
    from syncengine.sources.postgres.config import PostgresSourceConfig
    from syncengine.targets.postgres.config import PostgresTargetConfig

    owners: dict[tuple[str, str], str] = {}
    problems: list[str] = []

    def claim(owner: str, path: str, dsn: str, table: str) -> None:
        first = owners.setdefault((dsn, table), owner)
        problem = (
            f"{path}: table {table} of this database is also written back by {first}; "
            "two-way links that share a database form a chain or ring that forwards "
            "changes: declare one mesh (meshes:) with every database as a node"
        )
        if first != owner and problem not in problems:
            problems.append(problem)

    for name, spec in config.pipelines.items():
        source, target = spec.source, spec.target
        if not spec.two_way or not isinstance(source, PostgresSourceConfig):
            continue
        if not isinstance(target, PostgresTargetConfig):
            continue
        where = f"pipelines.{name}"
        for mapping in spec.mappings_for_sources():
            claim(where, where, source.dsn.get_secret_value(), canonical(mapping.source))
            table = QualifiedName.parse(mapping.target_name, target.schema_).sql
            claim(where, where, target.dsn.get_secret_value(), table)
    for name, mesh in config.meshes.items():
        for node, member in mesh.nodes.items():
            for table in mesh.tables:
                dsn = member.dsn.get_secret_value()
                claim(f"meshes.{name}", f"meshes.{name}.nodes.{node}", dsn, canonical(table))
    return problems


def _conflicts_problems(path: str, mesh: MeshConfig) -> list[str]:
    conflicts = mesh.conflicts
    chosen = conflicts.model_fields_set
    if conflicts.prefer is not None:
        return [
            f"{path}.prefer: not for a mesh: a node's row may be a third node's change carried "
            "in, which a pair of nodes cannot tell from the node's own, so one node cannot win "
            "every conflict the same way on every link; use strategy: timestamp"
        ]
    problems = []
    if "strategy" not in chosen:
        problems.append(f"{path}.strategy: a mesh needs a converging strategy: strategy: timestamp")
    elif conflicts.strategy != "timestamp":
        problems.append(
            f"{path}.strategy: '{conflicts.strategy}' does not converge in a mesh (only "
            "timestamp: the latest commit wins on every node, whichever link it comes by)"
        )
    if conflicts.timestamp is not None:
        problems.append(
            f"{path}.timestamp: a mesh compares commit times (a delete carries no column "
            "value); leave timestamp: unset"
        )
    if "tie" in chosen:
        problems.append(
            f"{path}.tie: a mesh breaks ties by node order (the node listed first wins); "
            "leave tie: unset"
        )
    if "audit" in chosen:
        problems.append(f"{path}.audit: only for strategy remote")
    return problems


# -- the directions -----------------------------------------------------------------------


def split_meshes(config: Config) -> Config:
    """``config`` with every mesh's directions added to its pipelines (a checked config:
    :func:`check_meshes` found nothing)."""
    if not config.meshes:
        return config
    pipelines = dict(config.pipelines)
    for name, mesh in config.meshes.items():
        nodes = list(mesh.nodes)
        for node in nodes:
            for other in nodes:
                if node != other:
                    pipelines[direction_name(name, node, other)] = _direction(
                        name, mesh, node, other
                    )
    return config.model_copy(update={"pipelines": pipelines})


def _direction(name: str, mesh: MeshConfig, node: str, other: str) -> PipelineConfig:
    from syncengine.config.models import MappingConfig, PipelineConfig
    from syncengine.names import DEFAULT_SCHEMA, QualifiedName
    from syncengine.sources.postgres.config import PostgresSourceConfig
    from syncengine.targets.postgres.config import PostgresTargetConfig

    nodes = list(mesh.nodes)
    ident = mesh_ident(name, node, other)
    thirds = [n for n in nodes if n not in (node, other)]
    source = PostgresSourceConfig(
        type="postgres",
        dsn=mesh.nodes[node].dsn,
        tables=mesh.tables,
        slot=ident,
        publication=ident,
        own_origins=[mesh_ident(name, other, node)],
        ignore_origins=[mesh_ident(name, third, node) for third in thirds],
    )
    target = PostgresTargetConfig(
        type="postgres",
        dsn=mesh.nodes[other].dsn,
        schema=DEFAULT_SCHEMA,
        replication_origin=ident,
        peer_origins=[mesh_ident(name, third, other) for third in thirds],
    )
    # ties: the node listed first wins (``remote`` is this direction's source)
    tie = "remote" if nodes.index(node) < nodes.index(other) else "local"
    return PipelineConfig(
        source=source,
        target=target,
        mappings=[MappingConfig(source=t, target=QualifiedName.parse(t).sql) for t in mesh.tables],
        conflicts=mesh.conflicts.model_copy(update={"tie": tie}),
        batch=mesh.batch,
        backfill=mesh.backfill.model_copy(update={"copy_rows": node == nodes[0]}),
        on_error=mesh.on_error,
    )
