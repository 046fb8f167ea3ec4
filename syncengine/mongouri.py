"""What a MongoDB URI asks for, read without PyMongo (the config models check it, and
loading a config must not import the driver)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit


def uri_options(uri: str) -> dict[str, list[str]]:
    """The URI's query options, names lower-cased (MongoDB option names ignore case)."""
    return {k.lower(): v for k, v in parse_qs(urlsplit(uri).query).items()}


def unacknowledged(uri: str) -> bool:
    """Whether the URI asks for unacknowledged writes (``w=0``)."""
    return any(v.strip() == "0" for v in uri_options(uri).get("w", []))


def majority_unless_set(uri: str) -> dict[str, Any]:
    """``w="majority"`` for ``connect``, unless the URI sets ``w`` itself. The engine
    acknowledges the source once the target confirmed a group; a write only the primary holds
    is rolled back by a failover, after which the source no longer has it (the slot moved
    on): lost. A cluster's default write concern may be ``w: 1`` (before MongoDB 5.0, or
    ``setDefaultRWConcern``); a standalone server takes ``majority`` as its journal. A ``w``
    the URI names is the user's choice and kept (``w=0`` is refused by the config)."""
    return {} if "w" in uri_options(uri) else {"w": "majority"}
