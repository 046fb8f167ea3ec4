"""A group's tables in the order the target's foreign keys need.

A replica made with ``pg_dump --schema-only`` carries the source's foreign keys, checked at
each statement (``NOT DEFERRABLE``, the default). A group is applied table by table, each
table's deletes then its upserts; in table order, a parent deleted in the same source
transaction as its children was refused while they were still there (the source deleted them
first), and a child inserted before its new parent would be too — dead letters, and a target
that kept rows the source deleted. The native apply worker avoids it with
``session_replication_role = replica``, which needs a superuser and silences the target's
own triggers; here the writes are ordered instead:

* when foreign keys checked at each statement link some of a group's tables, every write of
  those tables is split in two: its inserts and updates, applied first, parents before
  children (a child's new parent is there before it); then its deletes, children before
  parents (a parent goes once no child points at it: not deleted, not moved to another
  parent by an update). A key has one change in a write (the group is compacted), so the
  split reorders no key's changes; each part carries its own keys' shadow rows and fence
  keys.
* keys that are checked at the commit (``DEFERRABLE INITIALLY DEFERRED``) need nothing; a
  cycle of keys keeps the group's order for the tables in it; writes that truncate or have no
  key are left whole, in place.

The keys are read from the catalog when a group brings a table not seen yet (and again after
a foreign-key violation: a key added since), so a target without them pays a set comparison a
group.
"""

from __future__ import annotations

import graphlib
from collections.abc import Sequence
from dataclasses import replace

import psycopg
import pyarrow.compute as pc

from syncengine.changes import OP_DELETE, OP_TRUNCATE
from syncengine.deferred import polars as pl
from syncengine.targets.base import TableWrite
from syncengine.targets.shadow import shadow_of_keys

#: (child, parent) target table names linked by a key checked at each statement
Edges = frozenset[tuple[str, str]]
#: SQLSTATE foreign_key_violation
VIOLATION = "23503"


class ForeignKeys:
    """The immediate foreign keys among the tables groups have written, read again whenever a
    group brings a table not seen yet (a pipeline's tables, so a few reads a process)."""

    def __init__(self) -> None:
        self._tables: dict[str, tuple[str, str]] = {}
        self._edges = Edges()

    def forget(self) -> None:
        """Read the catalog again (a foreign-key violation: a key added since)."""
        self._tables.clear()
        self._edges = Edges()

    async def edges(
        self, conn: psycopg.AsyncConnection, tables: dict[str, tuple[str, str]]
    ) -> Edges:
        """The keys among ``tables`` (target name → (schema, table))."""
        if not tables.keys() <= self._tables.keys():
            self._tables.update(tables)
            self._edges = await _read(conn, self._tables)
        if not self._edges:
            return self._edges
        return frozenset(e for e in self._edges if e[0] in tables and e[1] in tables)


async def _read(conn: psycopg.AsyncConnection, tables: dict[str, tuple[str, str]]) -> Edges:
    return frozenset((child, parent) for _, child, parent in await links(conn, tables))


async def links(
    conn: psycopg.AsyncConnection, tables: dict[str, tuple[str, str]], deferred: bool = False
) -> list[tuple[str, str, str]]:
    """(constraint, child, parent) of the foreign keys among ``tables`` (target name →
    (schema, table); the names as given), a table's key to itself left out; ``deferred``:
    also those checked at the commit (``validate`` names them all)."""
    names = list(tables)
    rows = await (
        await conn.execute(
            "WITH t(name, nsp, rel) AS (SELECT * FROM unnest(%s::text[], %s::text[], "
            "%s::text[])), o AS (SELECT t.name, c.oid FROM t JOIN pg_namespace n ON "
            "n.nspname = t.nsp JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.rel) "
            "SELECT quote_ident(k.conname), child.name, parent.name FROM pg_constraint k "
            "JOIN o child ON child.oid = k.conrelid JOIN o parent ON parent.oid = k.confrelid "
            "WHERE k.contype = 'f' AND (%s OR NOT k.condeferred) AND k.conrelid <> k.confrelid "
            "ORDER BY 2, 1",
            (names, [tables[n][0] for n in names], [tables[n][1] for n in names], deferred),
        )
    ).fetchall()
    return [(name, child, parent) for name, child, parent in rows]


def ordered(writes: Sequence[TableWrite], edges: Edges) -> list[tuple[int, TableWrite]]:
    """The writes to apply, each with the index of the write it comes from: as given when no
    edge links two of them, else inserts and updates parents first, then deletes children
    first."""
    linked = {name for edge in edges for name in edge}
    movable = [
        i for i, w in enumerate(writes)
        if w.spec.name in linked and w.spec.key and not _truncates(w)
    ]  # fmt: skip
    if len(movable) < 2:
        return list(enumerate(writes))
    parents_first = _parents_first([writes[i].spec.name for i in movable], edges)
    rank = {name: n for n, name in enumerate(parents_first)}
    by_parent = sorted(movable, key=lambda i: (rank[writes[i].spec.name], i))
    rest = [(i, part) for i in by_parent if (part := _part(writes[i], False))]
    deletes = [(i, part) for i in reversed(by_parent) if (part := _part(writes[i], True))]
    moved = set(movable)
    others = [(i, w) for i, w in enumerate(writes) if i not in moved]
    return rest + deletes + others


def _parents_first(names: list[str], edges: Edges) -> list[str]:
    """``names`` with every parent before its children; a cycle keeps the given order."""
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for name in names:
        sorter.add(name, *(p for c, p in edges if c == name and p in names))
    try:
        return list(sorter.static_order())
    except graphlib.CycleError:
        return names


def _truncates(write: TableWrite) -> bool:
    return bool(pc.any(pc.equal(write.batch.ops, OP_TRUNCATE)).as_py())


def _part(write: TableWrite, deletes: bool) -> TableWrite | None:
    """The write's deletes (or everything else), with their own keys' shadow changes and
    fence keys; None when it has none."""
    is_delete = pc.equal(write.batch.ops, OP_DELETE).combine_chunks()
    mask = is_delete if deletes else pc.invert(is_delete)
    n = pc.sum(mask).as_py() or 0
    if n == 0:
        return None
    if n == write.batch.num_rows:
        return write
    data = write.batch.data.filter(mask)
    keys = data.select(list(write.spec.key))
    shadow = shadow_of_keys(write, pl.from_arrow(keys), keep=True)
    fence = write.shadow.fence
    if fence is not None:
        shadow = replace(shadow, fence=replace(fence, row_keys=fence.row_keys.filter(mask)))
    return TableWrite(write.spec, write.batch.replace(data), shadow)
