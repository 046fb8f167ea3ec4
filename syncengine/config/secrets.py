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


def redact(text: str) -> str:
    """``postgresql://u:secret@h/db`` → ``postgresql://u:***@h/db``; also ``password=…``."""
    text = _URI_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _KV_PASSWORD.sub(lambda m: f"{m['k']}***", text)
