"""``${VAR}`` interpolation and keeping secrets out of everything printed.

Interpolation runs on the raw YAML tree before validation, so a missing variable is reported
with its YAML path like any other problem. Values that carry credentials are typed
``pydantic.SecretStr`` in the models; :func:`redact` removes passwords from DSNs and URIs for
the places where a connection target has to be shown (status, logs).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(tree: Any, env: Mapping[str, str] | None = None) -> tuple[Any, list[str]]:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string; returns (tree, problems)."""
    env = os.environ if env is None else env
    problems: list[str] = []

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(node)]
        if isinstance(node, str):

            def sub(match: re.Match[str]) -> str:
                name, default = match.group(1), match.group(2)
                if name in env:
                    return env[name]
                if default is not None:
                    return default
                problems.append(f"{path}: environment variable {name} is not set")
                return ""

            return _VAR.sub(sub, node)
        return node

    return walk(tree, ""), problems


_URI_PASSWORD = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@"
)
_KV_PASSWORD = re.compile(r"(?P<k>\bpassword\s*=\s*)(?P<v>'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


_KNOWN: set[str] = set()
_USERINFO = re.compile(r"://(?P<info>[^/?#\s]*)@")


def register_secret(value: str | None) -> None:
    """A literal that must never be printed, whatever quotes or mangles it (libpq echoes a
    malformed password back in its error, for instance)."""
    if value and len(value) >= 3:
        _KNOWN.add(value)


def register_connection_secrets(dsn: str) -> None:
    """Register the password of a DSN/URI, raw and percent-decoded, without parsing it
    strictly (a malformed one is exactly what ends up in an error message)."""
    for match in _USERINFO.finditer(dsn):
        _, colon, password = match["info"].partition(":")
        if colon:
            register_secret(password)
            register_secret(unquote(password))
    for match in _KV_PASSWORD.finditer(dsn):
        register_secret(match["v"].strip("'"))


def redact(text: str) -> str:
    """``postgresql://u:secret@h/db`` → ``postgresql://u:***@h/db``; also ``password=…`` and
    every registered secret literal."""
    text = _URI_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    text = _KV_PASSWORD.sub(lambda m: f"{m['k']}***", text)
    for secret in sorted(_KNOWN, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
