"""What a publication the user made (``source.publication``) must publish for nothing to be lost.

The engine's own publication publishes every kind of change of whole rows, through a
partitioned table's root. One a person created may not, and the stream then lacks changes
without a word from Postgres, while the copy (a plain read of each table) has every row:

* ``publish`` without ``delete`` (or ``update``, ``insert``, ``truncate``): those changes never
  reach the target (a row deleted at the source stayed at the target);
* a row filter (``FOR TABLE a WHERE (…)``, PostgreSQL 15): the copy reads every row, the stream
  only the matching ones, so a row outside the filter is never updated or deleted at the target;
* a column list (``FOR TABLE a (id, v)``, PostgreSQL 15): the other columns arrive as NULL in
  every streamed row;
* ``publish_via_partition_root = false`` with a partitioned table: its changes arrive under the
  partitions' names, which no mapping reads.

:func:`problems` names each, with the statement that fixes it (``validate``, and every start).
A publication that does not exist yet is the engine's to create, rightly."""

from __future__ import annotations

import psycopg
from psycopg import sql

#: the kinds of change a publication must publish, by their ``pg_publication`` column
KINDS = {
    "insert": "pubinsert",
    "update": "pubupdate",
    "delete": "pubdelete",
    "truncate": "pubtruncate",
}


async def problems(conn: psycopg.AsyncConnection, publication: str, tables: list[str]) -> list[str]:
    """Why ``publication`` cannot carry every change of ``tables`` (empty: it can)."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in KINDS.values())
    row = await (
        await conn.execute(
            sql.SQL("SELECT pubviaroot, {} FROM pg_publication WHERE pubname = %s").format(columns),
            (publication,),
        )
    ).fetchone()
    if row is None:
        return []
    found: list[str] = []
    via_root, *published = row
    missing = [kind for kind, on in zip(KINDS, published, strict=True) if not on]
    if missing:
        found.append(
            f"publication: {publication} does not publish {', '.join(missing)}, so those "
            f"changes would never reach the target; run ALTER PUBLICATION {publication} SET "
            "(publish = 'insert, update, delete, truncate')"
        )
    if not via_root:
        partitioned = await _partitioned(conn, tables)
        if partitioned:
            found.append(
                f"publication: {publication} publishes the partitions of "
                f"{', '.join(partitioned)} under their own names, which no mapping reads; run "
                f"ALTER PUBLICATION {publication} SET (publish_via_partition_root = true)"
            )
    version = int((await (await conn.execute("SHOW server_version_num")).fetchone() or (0,))[0])
    if version >= 150000:  # row filters and column lists
        found.extend(await _filtered(conn, publication, tables))
    return found


async def _partitioned(conn: psycopg.AsyncConnection, tables: list[str]) -> list[str]:
    cur = await conn.execute(
        "SELECT t FROM unnest(%s::text[]) AS t JOIN pg_class c ON c.oid = to_regclass(t) "
        "WHERE c.relkind = 'p' ORDER BY t",
        (tables,),
    )
    return [t for (t,) in await cur.fetchall()]


async def _filtered(
    conn: psycopg.AsyncConnection, publication: str, tables: list[str]
) -> list[str]:
    """The configured tables the publication filters by row or narrows to some columns."""
    found = []
    for table in tables:
        row = await (
            await conn.execute(
                "SELECT pg_get_expr(r.prqual, r.prrelid), cardinality(r.prattrs::int2[]), "
                "(SELECT count(*) FROM pg_attribute a WHERE a.attrelid = r.prrelid "
                "AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '') "
                "FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid "
                "WHERE p.pubname = %s AND r.prrelid = to_regclass(%s)",
                (publication, table),
            )
        ).fetchone()
        if row is None:
            continue
        rowfilter, listed, columns = row
        again = (
            f"run ALTER PUBLICATION {publication} DROP TABLE {table}, then ALTER PUBLICATION "
            f"{publication} ADD TABLE {table}"
        )
        if rowfilter is not None:
            found.append(
                f"publication: {publication} publishes only the rows of {table} matching "
                f"WHERE {rowfilter}, but the copy reads every row: a row outside it would never "
                f"be updated or deleted at the target; {again} (a mapping's filter mirrors a "
                "subset of rows)"
            )
        if listed is not None and listed < columns:
            found.append(
                f"publication: {publication} publishes only some columns of {table}, so the "
                f"others would arrive as NULL in every streamed row; {again} (a mapping's "
                "exclude leaves columns out)"
            )
    return found
