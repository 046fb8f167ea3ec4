"""Checks that a Mongo target can be written, with the fix for each problem (``validate``)."""

from __future__ import annotations

from pymongo.errors import PyMongoError

from syncengine.config.models import PipelineConfig
from syncengine.errors import ConfigError
from syncengine.mongoclient import connect, tls_hint
from syncengine.targets.mongo.config import MongoTargetConfig


async def check_target(name: str, pipeline: PipelineConfig) -> list[str]:
    target = pipeline.target
    assert isinstance(target, MongoTargetConfig)
    try:
        client = connect(target.uri.get_secret_value(), "target", serverSelectionTimeoutMS=5000)
    except ConfigError as exc:
        return [p.removeprefix("target.") for p in exc.problems]
    try:
        await client.admin.command("ping")
        if target.origin:
            hello = await client.admin.command("hello")
            if not (hello.get("setName") or hello.get("msg") == "isdbgrid"):
                return [
                    "two_way: this Mongo server runs no transactions, which the engine marks "
                    "its own writes with; use a replica set or a sharded cluster"
                ]
        return []
    except PyMongoError as exc:
        reason = str(exc).splitlines()[0].split(" (configured timeouts")[0]
        return [f"cannot connect: {reason}{tls_hint(target.uri.get_secret_value())}"]
    finally:
        await client.close()
