"""The ``mongo`` target's config model (``target: {type: mongo, …}``)."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, field_validator

from syncengine.config.base import TargetConfigBase
from syncengine.mongouri import unacknowledged


class MongoTargetConfig(TargetConfigBase):
    type: Literal["mongo"]
    uri: SecretStr
    database: str
    origin: str | None = None
    """Mark every apply transaction as this origin's, so a reader of this database can tell
    the engine's writes from others' (set by two-way pipelines; needs transactions:
    :mod:`syncengine.targets.mongo.origin`)."""

    @field_validator("uri")
    @classmethod
    def _acknowledged(cls, uri: SecretStr) -> SecretStr:
        if unacknowledged(uri.get_secret_value()):
            raise ValueError(
                "w=0 asks for unacknowledged writes: the engine acknowledges the source only "
                "after the target confirmed a write (a refused one would be lost without a "
                "dead letter); remove w=0, or set w=1 or w=majority"
            )
        return uri
