"""Checks that a Mongo source can be captured, all problems at once, each naming the fix.

Reachable; a replica set or sharded cluster (change streams); the user may open a change stream
on the database; and, where the config asks for post-images (``full_document: whenAvailable |
required``) or ``before_images``, the collections have ``changeStreamPreAndPostImages`` enabled.
"""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure, PyMongoError

from syncengine.config.models import MongoSourceConfig, PipelineConfig
from syncengine.errors import ConfigError
from syncengine.mongoclient import connect, tls_hint
from syncengine.sources.mongo.errors import map_error


async def check_source(name: str, pipeline: PipelineConfig) -> list[str]:
    source = pipeline.source
    assert isinstance(source, MongoSourceConfig)
    try:
        client: AsyncMongoClient[dict[str, Any]] = connect(
            source.uri.get_secret_value(), "source", serverSelectionTimeoutMS=5000
        )
    except ConfigError as exc:
        return [p.removeprefix("source.") for p in exc.problems]
    try:
        hello = await client.admin.command("hello")
        if not hello.get("setName") and hello.get("msg") != "isdbgrid":
            return [
                "the server is a standalone; change streams need a replica set or sharded "
                "cluster (start mongod with --replSet and run rs.initiate())"
            ]
        db = client[source.database]
        problems = await _can_watch(db, source)
        if source.full_document != "updateLookup" or source.before_images:
            problems += await _images_enabled(db, source)
        return problems
    except PyMongoError as exc:
        hint = tls_hint(source.uri.get_secret_value())
        return [f"cannot connect: {map_error(exc, 'source').message}{hint}"]
    finally:
        await client.close()


async def _can_watch(db: Any, source: MongoSourceConfig) -> list[str]:
    try:
        stream = await db.watch(max_await_time_ms=1)
        await stream.close()
        return []
    except OperationFailure as exc:
        return [
            f"cannot open a change stream on {source.database}: {map_error(exc, 'watch').message}"
            " (grant the 'read' role on the database, which includes changeStream)"
        ]


async def _images_enabled(db: Any, source: MongoSourceConfig) -> list[str]:
    wanted = set(source.collections)
    enabled: set[str] = set()
    async for info in await db.list_collections(filter={"name": {"$in": sorted(wanted)}}):
        images = (info.get("options") or {}).get("changeStreamPreAndPostImages") or {}
        if images.get("enabled"):
            enabled.add(info["name"])
    why = []
    if source.full_document != "updateLookup":
        why.append(f"full_document: {source.full_document}")
    if source.before_images:
        why.append("before_images: true")
    return [
        f"collection {coll}: {' and '.join(why)} need pre-/post-images; run "
        f"db.runCommand({{collMod: '{coll}', changeStreamPreAndPostImages: {{enabled: true}}}})"
        for coll in sorted(wanted - enabled)
    ]
