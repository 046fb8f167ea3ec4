"""The ``mongo`` source's config model (``source: {type: mongo, …}``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator

from syncengine.config.base import SourceConfigBase
from syncengine.config.durations import parse_duration


class MongoSourceConfig(SourceConfigBase):
    type: Literal["mongo"]
    uri: SecretStr
    """MongoDB connection URI; ``tls=true``, ``tlsCAFile=…`` pass through to PyMongo."""
    database: str
    collections: list[str] = Field(min_length=1)
    full_document: Literal["updateLookup", "whenAvailable", "required", "default"] = "updateLookup"
    """How an update event carries its document: looked up when read (``updateLookup``), its
    post-image (``whenAvailable`` / ``required``), or none (``default``: the update's own
    fields, rebuilt into the whole document from the pre-image with ``before_images``)."""
    before_images: bool = False
    """Ask for ``fullDocumentBeforeChange`` (the collection needs pre-images enabled)."""
    on_history_lost: Literal["resnapshot", "fail"] = "resnapshot"
    own_origins: list[str] = Field(default_factory=list)
    """Origins whose marked transactions are read as echoes, never applied: the engine's
    own writes in a two-way pipeline (set by it; :mod:`syncengine.sources.mongo.origins`)."""
    snapshot_chunk_docs: Annotated[int, Field(ge=1)] = 50_000
    query_timeout: Annotated[float, Field(gt=0)] = 60.0
    """Seconds one round trip to the source (a command, a cursor batch, a change-stream poll)
    may wait for its answer before the connection is presumed lost (PyMongo's
    ``socketTimeoutMS``; ``socketTimeoutMS``/``timeoutMS`` in the URI take precedence)."""

    @field_validator("query_timeout", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return parse_duration(value)

    def table_names(self) -> list[str]:
        return self.collections

    def resnapshot_on_history_lost(self) -> bool:
        return self.on_history_lost == "resnapshot"
