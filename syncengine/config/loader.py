"""Load a pipeline YAML file into :class:`~syncengine.config.models.Config`.

All problems are collected and raised together as one :class:`ConfigError`, each line naming
its YAML path (``pipelines.orders.conflicts.strategy: …``). No traceback reaches the user.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import SecretStr, ValidationError

from syncengine.config.fanout import check_fanout, split_fanout
from syncengine.config.mesh import check_meshes, split_meshes
from syncengine.config.models import Config
from syncengine.config.secrets import interpolate, register_connection_secrets, register_secret
from syncengine.config.twoway import check_two_way, split_two_way
from syncengine.errors import ConfigError, UnknownPlugin
from syncengine.plugins import (
    SOURCES,
    TARGETS,
    source_factory,
    target_factory,
    unknown_name_message,
)

_TAGGED_UNIONS = {"source": SOURCES, "target": TARGETS}
_SUBPATH = re.compile(
    r"^(?P<sub>[A-Za-z_][\w]*(?:\[\d+\])?(?:\.[\w]+(?:\[\d+\])?)*): (?P<msg>.*)$", re.S
)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate; raises ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config ({exc.strerror})"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: the config is not UTF-8 text (byte {exc.start})"]) from None
    return parse_config(text, source_name=str(path), env=env)


def parse_config(
    text: str, *, source_name: str = "<config>", env: Mapping[str, str] | None = None
) -> Config:
    try:
        raw = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError([f"{source_name}: the config nests too deeply"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source_name}:{mark.line + 1}:{mark.column + 1}" if mark else source_name
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: invalid YAML: {problem}"]) from None
    if raw is None:
        raise ConfigError([f"{source_name}: the config is empty; it needs a 'pipelines:' mapping"])
    if not isinstance(raw, dict):
        raise ConfigError([f"{source_name}: the config must be a mapping with 'pipelines:'"])
    size = expanded_size(raw)
    if size > MAX_NODES:
        raise ConfigError(
            [
                f"{source_name}: the config expands to {size:,} values (YAML aliases?); "
                f"the limit is {MAX_NODES:,}"
            ]
        )
    tree, problems = interpolate(raw, env)
    _register_secrets(tree)
    try:
        config = Config.model_validate(tree)
    except ValidationError as exc:
        problems.extend(format_validation_error(exc))
        raise ConfigError(problems) from None
    if any(pipeline.mappings for pipeline in config.pipelines.values()):
        # Polars, Arrow and sqlglot load only for a valid config that has mappings to check
        from syncengine.mappings import check_config

        problems.extend(check_config(config))
    problems.extend(check_two_way(config))
    problems.extend(check_fanout(config))
    problems.extend(check_meshes(config))
    if problems:
        raise ConfigError(problems)
    return split_fanout(split_meshes(split_two_way(config)))


MAX_NODES = 100_000


def _register_secrets(tree: Any) -> None:
    """Every DSN/URI password in the config becomes a literal that is never printed, even
    before validation (a config error message may quote the value); so does the whole value
    of any other ``SecretStr`` field of the section's kind (a plugin's token)."""
    state = tree.get("state") if isinstance(tree, dict) else None
    if isinstance(state, str):  # a shared store's postgresql:// URL
        register_connection_secrets(state)
    console = tree.get("console") if isinstance(tree, dict) else None
    if isinstance(console, dict) and isinstance(console.get("token"), str):
        register_secret(console["token"])
    meshes = tree.get("meshes") if isinstance(tree, dict) else None
    for mesh in meshes.values() if isinstance(meshes, dict) else ():
        nodes = mesh.get("nodes") if isinstance(mesh, dict) else None
        for node in nodes.values() if isinstance(nodes, dict) else ():
            if isinstance(node, dict) and isinstance(node.get("dsn"), str):
                register_connection_secrets(node["dsn"])
    pipelines = tree.get("pipelines") if isinstance(tree, dict) else None
    if not isinstance(pipelines, dict):
        return
    for pipeline in pipelines.values():
        for part, section in _sections(pipeline):
            if isinstance(section, dict):
                for name in ("dsn", "uri"):
                    if isinstance(section.get(name), str):
                        register_connection_secrets(section[name])
                for name in _secret_fields(part, section.get("type")):
                    if isinstance(section.get(name), str):
                        register_connection_secrets(section[name])
                        register_secret(section[name])


def _sections(pipeline: object) -> list[tuple[str, object]]:
    """A pipeline's source and target sections, with the targets of its ``fanout:`` (whose
    server URLs may carry a password too: registered here)."""
    if not isinstance(pipeline, dict):
        return []
    sections = [("source", pipeline.get("source")), ("target", pipeline.get("target"))]
    fanout = pipeline.get("fanout")
    if isinstance(fanout, dict):
        servers = fanout.get("servers")
        for server in servers if isinstance(servers, list) else []:
            if isinstance(server, str):
                register_connection_secrets(server)
        targets = fanout.get("targets")
        if isinstance(targets, dict):
            sections += [("target", section) for section in targets.values()]
    return sections


def _secret_fields(part: str, kind: object) -> list[str]:
    """The ``SecretStr`` fields of a kind's config model other than ``dsn``/``uri`` (none
    when the kind is unknown: validation reports that)."""
    registry = _TAGGED_UNIONS[part]
    if not isinstance(kind, str) or kind not in registry:
        return []
    try:
        model = (source_factory if part == "source" else target_factory)(kind).config
    except UnknownPlugin:
        return []
    return [
        field.alias or name
        for name, field in model.model_fields.items()
        if name not in ("dsn", "uri")
        and (field.annotation is SecretStr or SecretStr in get_args(field.annotation))
    ]


def expanded_size(tree: Any) -> int:
    """How many values the tree has once YAML aliases are expanded, without expanding them.

    PyYAML shares aliased objects, so a 10-line "billion laughs" file parses instantly but
    would take forever to walk; sizes are memoized per object and capped.
    """
    memo: dict[int, int] = {}

    def size(node: Any, depth: int) -> int:
        if depth > 200:
            raise ConfigError(["the config nests too deeply"])
        if not isinstance(node, dict | list):
            return 1
        known = memo.get(id(node))
        if known is not None:
            return known
        children = node.values() if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_NODES:
                break
        memo[id(node)] = total
        return total

    return size(tree, 0)


def format_validation_error(exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        parts = _path_parts(error["loc"])
        message = _message(error, parts)
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            parts.append("type")
        match = _SUBPATH.match(message)
        if error["type"] == "value_error" and match:
            parts.append(match["sub"])
            message = match["msg"]
        line = f"{_join(parts)}: {message}" if parts else message
        if line not in lines:
            lines.append(line)
    return lines


def _path_parts(loc: tuple[int | str, ...]) -> list[str]:
    parts: list[str] = []
    for i, item in enumerate(loc):
        union = _union_before(loc[:i])
        if union is not None and isinstance(item, str) and item in union:
            continue  # pydantic puts the discriminator value in the path; users never wrote it
        if item == "[key]":
            continue
        parts.append(f"[{item}]" if isinstance(item, int) else str(item))
    return parts


def _union_before(loc: tuple[int | str, ...]) -> Any:
    """The registry whose kinds the next path item may name: after ``source`` / ``target``,
    and after a target's name in ``fanout.targets``."""
    if loc and loc[-1] in _TAGGED_UNIONS:
        return _TAGGED_UNIONS[str(loc[-1])]
    if len(loc) >= 3 and loc[-3:-1] == ("fanout", "targets"):
        return TARGETS
    return None


def _join(parts: list[str]) -> str:
    out = ""
    for part in parts:
        out += part if part.startswith("[") or not out else f".{part}"
    return out


def _message(error: Any, parts: list[str]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        registry = _union_before(tuple(error["loc"])) or SOURCES
        if kind == "union_tag_not_found":
            return f"missing 'type' (one of: {', '.join(registry.names())})"
        return unknown_name_message(str(ctx.get("tag")), registry.kind, registry.names())
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown key (check the spelling)"
    if kind == "string_pattern_mismatch" and "[key]" in error["loc"]:
        if "nodes" in error["loc"]:
            return "node names are words of a-z and 0-9 joined by single _ (no __)"
        named = "target" if "targets" in error["loc"] else "pipeline"
        return f"{named} names may only use a-z, 0-9 and _"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message
