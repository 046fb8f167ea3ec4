"""Building PyMongo's ``AsyncMongoClient`` in one place, for sources, targets and preflights.

PyMongo validates the URI and opens files such as ``tlsCAFile`` when the client is created,
raising ``ConfigurationError`` or a bare ``OSError``: both become a config error naming the
option (exit 2). A TLS handshake against a server that does not speak TLS never completes, so
server selection just times out; :func:`tls_hint` adds the likely cause to that message.
:func:`error_rule` reads a driver error for the engine's error table.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import ConfigurationError, ConnectionFailure, PyMongoError

from syncengine.config.secrets import redact
from syncengine.errors import MONGO_LABEL_RULES, ConfigError, Rule, mongo_rule
from syncengine.mongouri import uri_options


def connect(uri: str, role: str, **options: Any) -> AsyncMongoClient[Any]:
    """A client for ``uri``; ``role`` (``source``/``target``) names the config section."""
    try:
        return AsyncMongoClient(uri, **options)
    except FileNotFoundError as exc:
        raise ConfigError(
            [f"{role}.uri: cannot read '{exc.filename}' (tlsCAFile / tlsCertificateKeyFile?)"]
        ) from None
    except (ConfigurationError, OSError, ValueError, TypeError) as exc:
        raise ConfigError([f"{role}.uri: {redact(str(exc).splitlines()[0])}"]) from None


#: how long closing a change stream (``killCursors``) or cancelling a read of one may take
CLOSE_SECONDS = 5.0


async def close_stream(stream: Any) -> None:
    """Close a change stream within :data:`CLOSE_SECONDS`, errors ignored. A stopping
    pipeline closes its streams; a close that gets no answer held the stop for the socket
    timeout or longer (docs/reliability-findings.md, the Mongo stop that hung). A cursor left
    open is reaped by the server (cursor timeout, or its session ending with the client)."""
    with contextlib.suppress(PyMongoError, TimeoutError):
        await asyncio.wait_for(stream.close(), CLOSE_SECONDS)


def read_deadline(uri: str, seconds: float) -> dict[str, Any]:
    """``socketTimeoutMS`` for ``connect``: without one PyMongo waits for an answer forever,
    so a connection that went silent (half-open) would stall the pipeline. A deadline the URI
    sets (``socketTimeoutMS``, or the operation-wide ``timeoutMS``) wins."""
    if {"sockettimeoutms", "timeoutms"} & uri_options(uri).keys():
        return {}
    return {"socketTimeoutMS": int(seconds * 1000)}


def uses_tls(uri: str) -> bool:
    query = uri_options(uri)
    flags = query.get("tls", []) + query.get("ssl", [])
    return uri.startswith("mongodb+srv://") or any(v.lower() == "true" for v in flags)


def tls_hint(uri: str) -> str:
    """Appended to connection failures of TLS URIs."""
    if not uses_tls(uri):
        return ""
    return " (tls is enabled in the URI: does the server speak TLS? check tlsCAFile)"


def error_rule(exc: PyMongoError) -> Rule:
    """What ``exc`` means to the engine (:func:`syncengine.errors.mongo_rule`): its server code,
    its error labels, and whether the driver lost the connection."""
    labels = [label for label in MONGO_LABEL_RULES if exc.has_error_label(label)]
    code = getattr(exc, "code", None)
    return mongo_rule(code, labels, connection_lost=isinstance(exc, ConnectionFailure))
