"""``validate`` checks of a Mongo source against the fixture's server."""

from __future__ import annotations

import asyncio

from pymongo import MongoClient

from syncengine.config.models import PipelineConfig
from syncengine.sources.mongo.preflight import check_source


def _pipeline(uri: str, db: str, **source: object) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "source": {"type": "mongo", "uri": uri, "database": db, "collections": ["a", "b"]}
            | source,
            "target": {"type": "parquet", "path": "/tmp/unused"},
        }
    )


def test_preflight_passes_and_names_collections_without_images(mongo_uri, mongo_db):
    with MongoClient(mongo_uri) as client:
        client[mongo_db].create_collection("a", changeStreamPreAndPostImages={"enabled": True})
        client[mongo_db].create_collection("b")
    assert asyncio.run(check_source("p", _pipeline(mongo_uri, mongo_db))) == []
    problems = asyncio.run(check_source("p", _pipeline(mongo_uri, mongo_db, before_images=True)))
    assert len(problems) == 1
    assert problems[0].startswith("collection b: before_images: true need pre-/post-images")
    assert "collMod: 'b'" in problems[0]


def test_preflight_reports_an_unreachable_server_without_secrets():
    uri = "mongodb://user:s3cret@127.0.0.1:1/?serverSelectionTimeoutMS=300"
    problems = asyncio.run(check_source("p", _pipeline(uri, "x")))
    assert len(problems) == 1 and problems[0].startswith("cannot connect")
    assert "s3cret" not in problems[0]
