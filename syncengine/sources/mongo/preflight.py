"""Checks that a Mongo source can be captured (reachable, a replica set, change streams)."""

from __future__ import annotations

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from syncengine.config.models import MongoSourceConfig, PipelineConfig


async def check_source(name: str, pipeline: PipelineConfig) -> list[str]:
    source = pipeline.source
    assert isinstance(source, MongoSourceConfig)
    client: AsyncMongoClient = AsyncMongoClient(
        source.uri.get_secret_value(), serverSelectionTimeoutMS=5000
    )
    try:
        hello = await client.admin.command("hello")
        if not hello.get("setName") and hello.get("msg") != "isdbgrid":
            return [
                "the server is a standalone; change streams need a replica set or sharded "
                "cluster (start mongod with --replSet and run rs.initiate())"
            ]
        return []
    except PyMongoError as exc:
        return [f"cannot connect: {str(exc).splitlines()[0].split(' (configured timeouts')[0]}"]
    finally:
        await client.close()
