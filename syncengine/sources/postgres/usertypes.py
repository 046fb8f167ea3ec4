"""Definitions of user-defined column types (enum, composite, domain), read from the catalog.

A Postgres target that creates a table must create these types first, and it never sees the
source. So the source reads each user-defined type a column uses, with the user-defined types
that one depends on (a composite's attribute types, a domain's base type, an array's element
type), and the column's Arrow field carries them as ``pg_typedefs`` metadata: a JSON list,
dependencies first, the column's own (element) type last. Each entry is one of

* ``{"name": "mood", "kind": "enum", "labels": ["sad", "ok"]}``
* ``{"name": "pair", "kind": "composite", "attributes": [["a", "integer"], ["m", "mood"]]}``
* ``{"name": "posint", "kind": "domain", "base": "integer", "not_null": false,
  "checks": ["CHECK ((VALUE > 0))"]}``
* ``{"name": "citext", "kind": "other"}`` (a base or range type from an extension: the target
  uses it if it exists there, else text)

Type references inside a definition use the referenced user type's bare name (it is created
next to it, in the target schema) and ``format_type`` spelling for built-in types.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import psycopg

from syncengine.names import QualifiedName

#: oids below this are built into Postgres (FirstNormalObjectId)
FIRST_USER_OID = 16384

_TYPE = (
    "SELECT t.typname, t.typtype, t.typelem, t.typbasetype, t.typtypmod, t.typnotnull, "
    "t.typrelid, t.typcategory FROM pg_type t WHERE t.oid = %s"
)


async def column_type_oids(conn: psycopg.AsyncConnection, tables: Iterable[str]) -> list[int]:
    """The user-defined types the columns of ``tables`` (canonical names) use; tables are
    found by (schema, name) in the catalog, never by a name cast to regclass."""
    names = [QualifiedName.parse(t) for t in tables]
    cur = await conn.execute(
        "SELECT DISTINCT a.atttypid FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN unnest(%s::text[], %s::text[]) AS t(nsp, rel) "
        "ON n.nspname = t.nsp AND c.relname = t.rel "
        "WHERE a.attnum > 0 AND NOT a.attisdropped AND a.atttypid >= %s",
        ([n.schema for n in names], [n.name for n in names], FIRST_USER_OID),
    )
    return [row[0] for row in await cur.fetchall()]


async def definitions(conn: psycopg.AsyncConnection, oids: Iterable[int]) -> dict[int, str]:
    """oid → the ``pg_typedefs`` JSON for a column of that type (user types only)."""
    reader = _Reader(conn)
    out: dict[int, str] = {}
    for oid in oids:
        if oid >= FIRST_USER_OID:
            found: list[dict[str, Any]] = []
            await reader.collect(oid, found, set())
            if found:
                out[oid] = json.dumps(found)
    return out


class _Reader:
    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def _one(self, query: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
        row = await (await self.conn.execute(query, params)).fetchone()
        assert row is not None, f"catalog row for {params} vanished"
        return tuple(row)

    async def reference(
        self, oid: int, typmod: int, found: list[dict[str, Any]], seen: set[int]
    ) -> str:
        """How a definition names type ``oid``, after collecting its own definitions."""
        if oid < FIRST_USER_OID:
            return str((await self._one("SELECT format_type(%s, %s)", (oid, typmod)))[0])
        name, _, elem, *_, category = await self._one(_TYPE, (oid,))
        if category == "A" and elem:
            return await self.reference(elem, typmod, found, seen) + "[]"
        await self.collect(oid, found, seen)
        return str(name)

    async def collect(self, oid: int, found: list[dict[str, Any]], seen: set[int]) -> None:
        """Append the definitions type ``oid`` needs, dependencies first (each once)."""
        if oid in seen or oid < FIRST_USER_OID:
            return
        seen.add(oid)
        name, kind, elem, base, typmod, not_null, relid, category = await self._one(_TYPE, (oid,))
        if category == "A" and elem:
            await self.collect(elem, found, seen)
            return
        entry: dict[str, Any] = {"name": name}
        if kind == "e":
            cur = await self.conn.execute(
                "SELECT enumlabel FROM pg_enum WHERE enumtypid = %s ORDER BY enumsortorder",
                (oid,),
            )
            entry.update(kind="enum", labels=[r[0] for r in await cur.fetchall()])
        elif kind == "c":
            cur = await self.conn.execute(
                "SELECT attname, atttypid, atttypmod FROM pg_attribute WHERE attrelid = %s "
                "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                (relid,),
            )
            attributes = [
                [attname, await self.reference(atttypid, atttypmod, found, seen)]
                for attname, atttypid, atttypmod in await cur.fetchall()
            ]
            entry.update(kind="composite", attributes=attributes)
        elif kind == "d":
            cur = await self.conn.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE contypid = %s AND contype = 'c' ORDER BY conname",
                (oid,),
            )
            checks = [r[0] for r in await cur.fetchall()]
            entry.update(
                kind="domain",
                base=await self.reference(base, typmod, found, seen),
                not_null=bool(not_null),
                checks=checks,
            )
        else:
            entry.update(kind="other")
        found.append(entry)
