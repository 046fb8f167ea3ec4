"""The ``mongo`` target's config model (``target: {type: mongo, …}``)."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr

from syncengine.config.base import TargetConfigBase


class MongoTargetConfig(TargetConfigBase):
    type: Literal["mongo"]
    uri: SecretStr
    database: str
