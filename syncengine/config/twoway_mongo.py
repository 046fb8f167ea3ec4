"""Two-way pipelines with a Mongo side: what ``validate`` refuses, and a direction's Mongo ends.

Either side, or both, may be a Mongo database. A direction that writes Mongo marks every
transaction it applies as its origin's (:mod:`syncengine.targets.mongo.origin`); a direction
that reads Mongo reads the database's change stream (the mapped collections) and passes the
other direction's marked transactions on as echoes, as a Postgres reader does with its
sibling's replication origin. Each change crosses once.

Why a mapping names the document ``_id`` as a plain copy:

* into Mongo (``_id: id``): the direction reading that database back gets only ``_id`` with a
  delete, so the key on the other side has to be computable from it;
* out of Mongo (``id: _id``, or ``_id: _id`` into another collection): the same, the other way
  round: the reverse direction writes a delete back by the ``_id`` it came from.

With ``fields`` listed the reverse also knows which document fields become which columns (a
document may hold fields no column takes, which are left alone). Between two Mongo databases a
mapping without ``fields`` copies whole documents both ways. ``flatten`` is refused: the
columns it makes depend on the documents met, so it cannot be inverted; listing the nested
paths (``customer_email: customer.email``) does the same and inverts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from syncengine.config.models import MappingConfig, PipelineConfig
    from syncengine.sources.mongo.config import MongoSourceConfig
    from syncengine.targets.mongo.config import MongoTargetConfig

#: how a two-way direction reads a Mongo side's updates (see :func:`two_way_stream`)
FULL_DOCUMENT = "default"


def mongo_problems(where: str, part: str, spec: PipelineConfig) -> list[str]:
    """Why the Mongo side ``part`` (``source`` / ``target``) of two-way ``spec`` cannot run."""
    if part == "source":
        return _source_problems(where, spec)
    problems: list[str] = []
    both = spec.source.type == "mongo"
    try:
        mapped = {spec.source_key(m.source) for m in spec.mappings}
        unmapped = [t for t in spec.source.table_names() if spec.source_key(t) not in mapped]
    except ValueError:
        unmapped = []  # a name that does not parse: reported by the mapping checks
    if not both:
        for table in unmapped:
            problems.append(
                f"{where}.source.tables: {table} has no mapping; a two_way pipeline into Mongo "
                "needs one per table with fields that name the document _id (e.g. _id: id)"
            )
    for index, mapping in enumerate(spec.mappings):
        path = f"{where}.mappings[{index}]"
        if not mapping.fields:
            if not both:
                problems.append(
                    f"{path}.fields: a two_way mapping into Mongo lists its fields, _id among "
                    "them (e.g. {_id: id, name: name}): the reverse direction writes each back "
                    "to its column and gets only _id with a delete"
                )
            continue
        copied = _copy_of(mapping, "_id")
        if copied is None or (both and copied != "_id"):
            example = "_id: _id" if both else "_id: id"
            problems.append(
                f"{path}.fields._id: a two_way mapping into Mongo makes the document _id a "
                f"plain copy of the key column (e.g. {example}), so a delete read back from "
                "Mongo (its _id only) names the row"
            )
    return problems


def _source_problems(where: str, spec: PipelineConfig) -> list[str]:
    """A Mongo ``source`` side: its stream must read updates as made, and every mapping must
    carry the document ``_id`` to the other side as a plain copy."""
    from syncengine.sources.mongo.config import MongoSourceConfig

    source = spec.source
    assert isinstance(source, MongoSourceConfig)
    problems: list[str] = []
    chosen = source.model_fields_set
    if "full_document" in chosen and source.full_document != FULL_DOCUMENT:
        problems.append(
            f"{where}.source.full_document: a two_way pipeline reads a Mongo side's updates as "
            "they were made (full_document: default with before_images); remove it"
        )
    if "before_images" in chosen and not source.before_images:
        problems.append(
            f"{where}.source.before_images: a two_way pipeline needs the pre-images of a Mongo "
            "side's updates (changeStreamPreAndPostImages on its collections); remove it"
        )
    into_mongo = spec.target.type == "mongo"
    try:
        mapped = {spec.source_key(m.source) for m in spec.mappings}
    except ValueError:
        mapped = set()
    if not into_mongo:
        for collection in source.collections:
            if spec.source_key(collection) not in mapped:
                problems.append(
                    f"{where}.source.collections: {collection} has no mapping; a two_way "
                    "pipeline from Mongo into Postgres needs one per collection with fields, "
                    "one a plain copy of the document _id (e.g. id: _id)"
                )
    for index, mapping in enumerate(spec.mappings):
        path = f"{where}.mappings[{index}]"
        if mapping.flatten:
            problems.append(
                f"{path}.flatten: a two_way mapping cannot be flattened (its columns depend on "
                "the documents met, so it cannot be inverted); list the fields instead, e.g. "
                "customer_email: customer.email"
            )
        if not mapping.fields:
            if not into_mongo:
                problems.append(
                    f"{path}.fields: a two_way mapping from Mongo into Postgres lists its "
                    "fields, one a plain copy of the document _id (e.g. {id: _id, name: "
                    "name}): the reverse direction writes each back to its document field"
                )
            continue
        if not _copies(mapping, "_id") and not into_mongo:
            problems.append(
                f"{path}.fields: a two_way mapping from Mongo copies the document _id into a "
                "field of its own (e.g. id: _id), so a delete read back names the document"
            )
    return problems


def _copy_of(mapping: MappingConfig, field: str) -> str | None:
    """The source column that target ``field`` of ``mapping`` copies (None: computed or
    absent)."""
    from syncengine.config.twoway import copied_column

    text = (mapping.fields or {}).get(field)
    return None if text is None else copied_column(text, mapping)


def _copies(mapping: MappingConfig, column: str) -> bool:
    """Whether some field of ``mapping`` is a plain copy of source ``column``."""
    from syncengine.config.twoway import copied_column

    return any(copied_column(text, mapping) == column for text in (mapping.fields or {}).values())


def two_way_stream(source: MongoSourceConfig, own_origins: list[str]) -> MongoSourceConfig:
    """``source`` as a two-way direction reads it: the other direction's marked transactions
    are echoes, and an update is read as it was made (pre-image + update description = the
    post-image), not the document when read: a later write of the other direction would
    otherwise stand for a person's update."""
    return source.model_copy(
        update={
            "own_origins": [*source.own_origins, *own_origins],
            "full_document": FULL_DOCUMENT,
            "before_images": True,
        }
    )


def reverse_mongo_source(
    name: str, spec: PipelineConfig, collections: list[str]
) -> MongoSourceConfig:
    """The reverse direction's reader of a Mongo target side: a change stream on its database
    that skips the forward direction's marked transactions."""
    from syncengine.config.twoway import manual_origin_name, origin_name
    from syncengine.sources.mongo.config import MongoSourceConfig
    from syncengine.targets.mongo.config import MongoTargetConfig

    forward_target = spec.target
    assert isinstance(forward_target, MongoTargetConfig)
    source = MongoSourceConfig(
        type="mongo",
        uri=forward_target.uri,
        database=forward_target.database,
        collections=sorted(set(collections)),
        query_timeout=getattr(spec.source, "query_timeout", 60.0),
    )
    return two_way_stream(source, [origin_name(name), manual_origin_name(name)])


def reverse_mongo_target(name: str, spec: PipelineConfig) -> MongoTargetConfig:
    """The reverse direction's writer of a Mongo source side: the source database, every
    transaction marked as the reverse direction's."""
    from syncengine.config.twoway import origin_name, reverse_name
    from syncengine.sources.mongo.config import MongoSourceConfig
    from syncengine.targets.mongo.config import MongoTargetConfig

    forward_source = spec.source
    assert isinstance(forward_source, MongoSourceConfig)
    return MongoTargetConfig(
        type="mongo",
        uri=forward_source.uri,
        database=forward_source.database,
        origin=origin_name(reverse_name(name)),
    )
