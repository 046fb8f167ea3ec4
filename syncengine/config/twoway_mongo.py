"""Two-way pipelines with a Mongo side: what ``validate`` refuses, and the reverse direction.

The Mongo database is the pipeline's ``target``; the ``source`` is Postgres. The forward
direction (Postgres → Mongo) marks every transaction it applies as its origin's
(:mod:`syncengine.targets.mongo.origin`); the reverse direction reads the target database's
change stream (a Mongo source, the collections the mappings write) and passes the marked
transactions on as echoes, as a Postgres reader does with its sibling's replication origin.
It writes the Postgres tables under its own replication origin, which the forward reader
skips: each change crosses once.

Why the mapping must name ``_id`` as a plain column (``_id: id``): the reverse direction gets
only ``_id`` from a delete, so the Postgres key column has to be computable from it; with
``fields`` listed it also knows which document fields become which columns (a document may
hold fields no column takes, which are left alone).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from syncengine.config.models import PipelineConfig


def mongo_problems(where: str, part: str, spec: PipelineConfig) -> list[str]:
    """Why the Mongo side ``part`` (``source`` / ``target``) of two-way ``spec`` cannot run."""
    from syncengine.config.twoway import copied_column

    if part == "source":
        return [
            f"{where}.source.type: in a two_way pipeline the Mongo database is the target side: "
            "put the Postgres database under source and the Mongo one under target (prefer "
            "and tie name the sides, so nothing else changes)"
        ]
    problems: list[str] = []
    try:
        mapped = {spec.source_key(m.source) for m in spec.mappings}
        unmapped = [t for t in spec.source.table_names() if spec.source_key(t) not in mapped]
    except ValueError:
        unmapped = []  # a name that does not parse: reported by the mapping checks
    for table in unmapped:
        problems.append(
            f"{where}.source.tables: {table} has no mapping; a two_way pipeline into Mongo "
            "needs one per table with fields that name the document _id (e.g. _id: id)"
        )
    for index, mapping in enumerate(spec.mappings):
        path = f"{where}.mappings[{index}]"
        if not mapping.fields:
            problems.append(
                f"{path}.fields: a two_way mapping into Mongo lists its fields, _id among "
                "them (e.g. {_id: id, name: name}): the reverse direction writes each back to "
                "its column and gets only _id with a delete"
            )
            continue
        text = mapping.fields.get("_id")
        if text is None or copied_column(text, mapping) is None:
            problems.append(
                f"{path}.fields._id: a two_way mapping into Mongo makes the document _id a "
                "plain copy of the key column (e.g. _id: id), so a delete read back from "
                "Mongo (its _id only) names the row"
            )
    return problems


def reverse_from_mongo(name: str, spec: PipelineConfig) -> PipelineConfig:
    """The Mongo → Postgres direction of checked two-way ``spec`` (Postgres source, Mongo
    target): a change stream on the target database that skips the forward direction's marked
    transactions, applying under its own replication origin."""
    from syncengine.config.twoway import inverted_mapping, origin_name, reverse_into_source
    from syncengine.sources.mongo.config import MongoSourceConfig
    from syncengine.sources.postgres.config import PostgresSourceConfig
    from syncengine.targets.mongo.config import MongoTargetConfig

    forward_source, forward_target = spec.source, spec.target
    assert isinstance(forward_source, PostgresSourceConfig)
    assert isinstance(forward_target, MongoTargetConfig)
    mappings = [
        inverted_mapping(spec, m, source=m.target_name) for m in spec.mappings_for_sources()
    ]
    source = MongoSourceConfig(
        type="mongo",
        uri=forward_target.uri,
        database=forward_target.database,
        collections=sorted({m.source for m in mappings}),
        # an update as it was made (pre-image + update description = the post-image), not
        # the document when read: a later write of the forward direction would otherwise
        # stand for a person's update
        full_document="default",
        before_images=True,
        query_timeout=forward_source.query_timeout,
        own_origins=[origin_name(name)],
    )
    return reverse_into_source(name, spec, source, mappings)
