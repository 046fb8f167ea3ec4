"""User-defined column types (enum, composite, domain) on tables the target creates.

The Postgres source sends each such column's type definitions as ``pg_typedefs`` field metadata
(see :mod:`syncengine.sources.postgres.usertypes`). Before a table or column is created, each
type is created in the target schema under its own name unless one of that name exists there
already (an enum that exists gains the labels it lacks). A type that cannot be created (no
privilege, an extension type the target lacks, a check constraint that does not look like one)
makes the column ``text`` instead, with a warning: the values are the same text either way.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql

from syncengine.targets.postgres.types import type_sql

log = logging.getLogger("syncengine.targets.postgres")

TEXT = sql.SQL("text")


def _defs(field: pa.Field) -> list[dict[str, Any]]:
    raw = (field.metadata or {}).get(b"pg_typedefs")
    return json.loads(raw) if raw else []


async def column_types(
    conn: psycopg.AsyncConnection, schema: str, fields: list[pa.Field]
) -> dict[str, sql.Composable]:
    """column → its SQL type, for the ``fields`` of user-defined types; creates the types."""
    made: dict[str, bool] = {}  # type name → usable in the target schema
    out: dict[str, sql.Composable] = {}
    for field in fields:
        defs = _defs(field)
        if not defs:
            continue
        names = {d["name"] for d in defs}
        usable = True
        for entry in defs:
            if entry["name"] not in made:
                made[entry["name"]] = await _ensure(conn, schema, entry, names, made)
            usable = usable and made[entry["name"]]
        pg_type = (field.metadata or {}).get(b"pg_type", b"").decode()
        if not usable:
            log.warning(
                "column %s: type %s could not be created in target schema %s; "
                "the column is text (the same values, as text)",
                field.name,
                pg_type,
                schema,
            )
            out[field.name] = TEXT
            continue
        own = sql.Identifier(schema, defs[-1]["name"])
        out[field.name] = sql.SQL("{}{}").format(own, sql.SQL("[]" * pg_type.count("[]")))
    return out


async def add_labels(
    conn: psycopg.AsyncConnection, schema: str, fields: list[pa.Field], columns: dict[str, str]
) -> None:
    """Give the enum type of each existing column in ``fields`` (its own type, named in its
    ``pg_typedefs``) the labels the source's has and it lacks: an ``ALTER TYPE … ADD VALUE``
    at the source after the table was created would otherwise have every row that uses the
    new label refused. They are appended (the source may have placed them ``BEFORE`` another
    label: sorting by the enum then differs, the values do not)."""
    for field in fields:
        defs = _defs(field)
        current = columns.get(field.name, "")
        if not defs or defs[-1].get("kind") != "enum":
            continue
        entry = defs[-1]
        if current.removesuffix("[]" * current.count("[]")).split(".")[-1] != entry["name"]:
            continue  # the column is not of that type here (text, a type of another name)
        name = sql.Identifier(schema, entry["name"])
        cur = await conn.execute(
            "SELECT enumlabel FROM pg_enum WHERE enumtypid = to_regtype(%s)",
            (name.as_string(conn),),
        )
        have = {row[0] for row in await cur.fetchall()}
        for label in entry["labels"]:
            if label not in have:
                log.warning(
                    "type %s gains the label %r (added at the source)", entry["name"], label
                )
                await _add_label(conn, name, label)


async def _add_label(conn: psycopg.AsyncConnection, name: sql.Identifier, label: str) -> None:
    await conn.execute(
        sql.SQL("ALTER TYPE {} ADD VALUE IF NOT EXISTS {}").format(name, sql.Literal(label))
    )


def _reference(schema: str, spelled: str, names: set[str]) -> sql.Composable:
    """A type named in a definition: a user type of the same list, or a built-in type."""
    base = spelled.removesuffix("[]" * spelled.count("[]"))
    if base in names:
        return sql.SQL("{}{}").format(sql.Identifier(schema, base), sql.SQL(spelled[len(base) :]))
    return type_sql(spelled)


async def _exists(conn: psycopg.AsyncConnection, name: sql.Composable) -> bool:
    row = await (await conn.execute("SELECT to_regtype(%s)", (name.as_string(conn),))).fetchone()
    return bool(row and row[0])


async def _ensure(
    conn: psycopg.AsyncConnection,
    schema: str,
    entry: dict[str, Any],
    names: set[str],
    made: dict[str, bool],
) -> bool:
    """Whether the type exists in ``schema`` now (created or extended here if needed)."""
    name = sql.Identifier(schema, entry["name"])
    kind = entry.get("kind")
    exists = await _exists(conn, name)
    try:
        async with conn.transaction():  # a savepoint: a failure leaves the caller's txn usable
            if kind == "enum" and exists:
                for label in entry["labels"]:
                    await _add_label(conn, name, label)
                return True
            if exists:
                return True
            statement = _create(schema, name, entry, names, made)
            if statement is None:
                return False
            await conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
            )
            await conn.execute(statement)
    except psycopg.errors.DuplicateObject:
        return True  # created meanwhile by another pipeline
    except psycopg.Error as exc:
        log.warning("creating type %s failed: %s", name.as_string(conn), exc)
        return False
    return True


def _create(
    schema: str,
    name: sql.Identifier,
    entry: dict[str, Any],
    names: set[str],
    made: dict[str, bool],
) -> sql.Composed | None:
    kind = entry.get("kind")
    if kind == "enum":
        labels = sql.SQL(", ").join(map(sql.Literal, entry["labels"]))
        return sql.SQL("CREATE TYPE {} AS ENUM ({})").format(name, labels)
    if kind == "composite":
        if any(not made.get(t.removesuffix("[]"), True) for _, t in entry["attributes"]):
            return None
        attributes = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(a), _reference(schema, t, names))
            for a, t in entry["attributes"]
        )
        return sql.SQL("CREATE TYPE {} AS ({})").format(name, attributes)
    if kind == "domain":
        checks: list[str] = entry.get("checks", [])
        # pg_get_constraintdef output of the source: one parenthesised CHECK, nothing after it
        if not all(c.startswith("CHECK (") and c.endswith(")") and ";" not in c for c in checks):
            return None
        parts: list[sql.Composable] = [
            sql.SQL("CREATE DOMAIN {} AS {}").format(name, _reference(schema, entry["base"], names))
        ]
        if entry.get("not_null"):
            parts.append(sql.SQL("NOT NULL"))
        parts.extend(sql.SQL(c) for c in checks)  # checked above
        return sql.SQL(" ").join(parts)
    return None  # an extension's base or range type: only usable where it exists
