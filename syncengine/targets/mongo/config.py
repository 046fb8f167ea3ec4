"""The ``mongo`` target's config model (``target: {type: mongo, …}``)."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr

from syncengine.config.base import TargetConfigBase


class MongoTargetConfig(TargetConfigBase):
    type: Literal["mongo"]
    uri: SecretStr
    database: str
    origin: str | None = None
    """Mark every apply transaction as this origin's, so a reader of this database can tell
    the engine's writes from others' (set by two-way pipelines; needs transactions:
    :mod:`syncengine.targets.mongo.origin`)."""
