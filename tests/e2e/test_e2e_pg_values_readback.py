"""Every strategy that reads the target back meets Postgres values with no Arrow form (issue
23): a Postgres target holding ``time '24:00'``, ``NaN`` in ``numeric(p,s)``, 2-D arrays,
infinities, BC dates and years past 294247 is read back for conflict detection without
stopping the pipeline, without false conflicts, and a genuine edit at the target is still
caught. Postgres → Postgres, real servers, compared as Postgres renders each value."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from collections.abc import Callable

import pytest
from bson import Decimal128
from pymongo import MongoClient

from tests.e2e.harness import CLI, execute, rows

CONFIG = textwrap.dedent(
    """
    state: ${{SYNCENGINE_STATE}}
    pipelines:
      edge:
        source: {{type: postgres, dsn: "${{SRC_DSN}}", tables: [public.e]}}
        target: {{type: postgres, dsn: "${{TGT_DSN}}"}}
        conflicts: {conflicts}
        batch: {{max_rows: 100, max_wait: 100ms}}
    """
)
STRATEGIES = {
    "local": "{strategy: local}",
    "merge": "{strategy: merge}",
    "manual": "{strategy: manual}",
    "timestamp": "{strategy: timestamp}",
    "remote+audit": "{strategy: remote, audit: true}",
}
#: column → (type, the edge values rows 1-4 cycle through)
EDGES: dict[str, tuple[str, list[str]]] = {
    "ts": (
        "timestamp",
        ["infinity", "-infinity", "4713-01-01 00:00:00 BC", "294276-12-31 23:59:59.999999"],
    ),
    "tstz": (
        "timestamptz",
        ["-infinity", "4713-01-01 00:00:00+00 BC", "infinity", "294276-12-31 23:59:59+00"],
    ),
    "d": ("date", ["infinity", "-infinity", "4713-01-01 BC", "5874897-12-31"]),
    "t": ("time", ["24:00:00"]),
    "ia": ("integer[]", ["{{1,2},{3,4}}", "[0:1]={7,8}"]),
    "ta": ("text[]", ['{{a,"b c"},{d,NULL}}']),
    "n": ("numeric(12,2)", ["NaN"]),
}
#: an ordinary value for every edge column
PLAIN = {
    "ts": "2024-02-29 12:34:56.5",
    "tstz": "2024-01-01 10:00:00+00",
    "d": "2024-02-29",
    "t": "12:34:56.789",
    "ia": "{1,NULL,3}",
    "ta": '{x,"y z"}',
    "n": "1.25",
}
CONFLICTS = "conflict(s) under"
RENDERED = "SELECT id, {}, note FROM e ORDER BY id".format(", ".join(f"{c}::text" for c in EDGES))


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def assignments(values: dict[str, str]) -> str:
    return ", ".join(f"{c} = {literal(v)}" for c, v in values.items())


def edge_row(i: int) -> dict[str, str]:
    return {c: vals[i % len(vals)] for c, (_, vals) in EDGES.items()}


def seed(dsn: str) -> None:
    definition = ", ".join(f"{c} {t}" for c, (t, _) in EDGES.items())
    inserts = [
        f"INSERT INTO e (id, {', '.join(EDGES)}, note) VALUES "
        f"({i}, {', '.join(literal(v) for v in edge_row(i).values())}, 'seed')"
        for i in range(1, 5)
    ] + [
        f"INSERT INTO e (id, {', '.join(EDGES)}, note) VALUES "
        f"({i}, {', '.join(literal(v) for v in PLAIN.values())}, 'seed')"
        for i in (5, 6)
    ]
    execute(dsn, f"CREATE TABLE e (id int PRIMARY KEY, {definition}, note text)", *inserts)


def synced(cli: CLI, source: str, target: str) -> None:
    """One ``sync --once``: no conflict, the target renders exactly as the source."""
    result = cli.run("sync", "--once")
    assert CONFLICTS not in result.stderr, result.stderr
    assert rows(target, RENDERED) == rows(source, RENDERED)


def edge_changes(source: str, synced: Callable[[], None]) -> None:
    """Source changes from, to and between values with no Arrow form; ``synced`` after each."""
    # rows 1-2 leave their edge values (a batch carrying every column natively, whose keys
    # the target holds with values that have no Arrow form); row 4 keeps them, note only
    execute(source, f"UPDATE e SET {assignments(PLAIN)}, note = 'plain' WHERE id IN (1, 2)")
    synced()
    execute(source, "UPDATE e SET note = 'edge kept' WHERE id = 4")
    synced()
    # the reverse: rows the target holds natively take edge values (text batch), and the
    # edge values change into other edge values
    execute(
        source,
        "BEGIN",
        f"UPDATE e SET {assignments(edge_row(3))}, note = 'edge again' WHERE id IN (1, 5)",
        f"UPDATE e SET {assignments(edge_row(0))}, note = 'other edge' WHERE id = 3",
        "COMMIT",
    )
    synced()
    # each edge column alone leaving its edge value, the others untouched
    for column, plain in PLAIN.items():
        execute(source, f"UPDATE e SET {column} = {literal(plain)} WHERE id = 4")
        synced()


def conflicting_source_edits(cli: CLI, source: str) -> None:
    """Row 6's note and row 3's time change at the source: two conflicts, once the target
    changed those rows."""
    execute(
        source,
        "UPDATE e SET note = 'source edit' WHERE id = 6",
        "UPDATE e SET t = '11:00' WHERE id = 3",
    )
    result = cli.run("sync", "--once")
    assert "2 " + CONFLICTS in result.stderr, result.stderr


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_read_back_of_values_without_arrow_form(tmp_path, pg_dsn, pg_target_dsn, strategy):
    seed(pg_dsn)
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn}
    cli = CLI(tmp_path, CONFIG.format(conflicts=STRATEGIES[strategy]), env)
    cli.run("backfill")
    assert rows(pg_target_dsn, RENDERED) == rows(pg_dsn, RENDERED)
    assert len(rows(pg_dsn, RENDERED)) == 6

    edge_changes(pg_dsn, lambda: synced(cli, pg_dsn, pg_target_dsn))

    # genuine edits at the target: row 6 (ordinary at the source) now holds edge values at the
    # target and its note changes at the source (a native batch); row 3 holds edge values on
    # both sides, its note is edited at the target and its time at the source; row 5 leaves
    # its edge values on both sides (the shadow's version alone holds them), its note differs
    # (row 5 in a batch of its own: every column native, nothing read back as text)
    execute(pg_target_dsn, f"UPDATE e SET {assignments(PLAIN)}, note = 'target edit' WHERE id = 5")
    target_before = {r[0]: r for r in rows(pg_target_dsn, RENDERED)}
    execute(pg_dsn, f"UPDATE e SET {assignments(PLAIN)}, note = 'source edit' WHERE id = 5")
    result = cli.run("sync", "--once")
    assert "1 " + CONFLICTS in result.stderr, result.stderr
    edits = {"t": "24:00", "n": "NaN", "ia": "{{5,6},{7,8}}", "ts": "infinity"}
    execute(
        pg_target_dsn,
        f"UPDATE e SET {assignments(edits)} WHERE id = 6",
        "UPDATE e SET note = 'target edit' WHERE id = 3",
    )
    target_before.update({r[0]: r for r in rows(pg_target_dsn, RENDERED) if r[0] != 5})
    conflicting_source_edits(cli, pg_dsn)
    source = {r[0]: r for r in rows(pg_dsn, RENDERED)}
    target = {r[0]: r for r in rows(pg_target_dsn, RENDERED)}
    for i in (1, 2, 4):
        assert target[i] == source[i]
    t_col = 1 + list(EDGES).index("t")
    if strategy in ("remote+audit", "timestamp"):  # the source wins
        assert [target[i] for i in (3, 5, 6)] == [source[i] for i in (3, 5, 6)]
    elif strategy in ("local", "manual"):  # the target's rows stay (manual: parked)
        assert [target[i] for i in (3, 5, 6)] == [target_before[i] for i in (3, 5, 6)]
    else:  # merge: each side's edit; both changed row 5's note: the tie goes to remote
        assert target[6] == (*target_before[6][:-1], "source edit")
        assert target[3][t_col] == "11:00:00" and target[3][-1] == "target edit"
        assert target[3][:t_col] == source[3][:t_col]
        assert target[5] == source[5]
    if strategy == "manual":
        parked = json.loads(cli.run("conflicts", "list", "--json").stdout)
        assert sorted(c["key"]["id"] for c in parked) == [3, 5, 6]
        local6 = next(c["local"] for c in parked if c["key"]["id"] == 6)
        assert (local6["t"], local6["n"]) == ("24:00:00", "NaN")
        # later changes to the parked keys wait behind them, values without an Arrow form
        # included (row 5 was parked from a batch carrying every column natively)
        execute(
            pg_dsn,
            f"UPDATE e SET {assignments(edge_row(2))}, note = 'held' WHERE id IN (5, 6)",
            "UPDATE e SET ia = '{{9}}' WHERE id = 3",
        )
        assert "3 held" in cli.run("sync", "--once").stderr
        for conflict in parked:
            cli.run("conflicts", "resolve", str(conflict["id"]), "--take", "remote")
        assert rows(pg_target_dsn, RENDERED) == rows(pg_dsn, RENDERED)

    # after the conflicts, later changes to those keys flow again without a conflict where the
    # target took the source's row
    if strategy != "local" and strategy != "merge":
        last = f"UPDATE e SET {assignments(edge_row(1))}, note = 'last' WHERE id IN (3, 5, 6)"
        execute(pg_dsn, last)
        synced(cli, pg_dsn, pg_target_dsn)
    verify = cli.run("verify", check=False)
    differs = strategy in ("local", "merge")  # the target kept its own edits
    assert verify.returncode == (1 if differs else 0), verify.stdout + verify.stderr
    assert "Traceback" not in verify.stderr


MONGO = textwrap.dedent(
    """
    state: ${{SYNCENGINE_STATE}}
    pipelines:
      edge:
        source: {{type: postgres, dsn: "${{SRC_DSN}}", tables: [public.e]}}
        target: {{type: mongo, uri: "${{MONGO_URI}}", database: "${{MONGO_DB}}"}}
        conflicts: {conflicts}
        batch: {{max_rows: 100, max_wait: 100ms}}
    """
)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_mongo_read_back_of_values_without_arrow_form(
    tmp_path, pg_dsn, mongo_uri, mongo_db, strategy
):
    seed(pg_dsn)
    env = {"SRC_DSN": pg_dsn, "MONGO_URI": mongo_uri, "MONGO_DB": mongo_db}
    cli = CLI(tmp_path, MONGO.format(conflicts=STRATEGIES[strategy]), env)
    cli.run("backfill")

    def synced() -> None:
        result = cli.run("sync", "--once")
        assert CONFLICTS not in result.stderr, result.stderr

    edge_changes(pg_dsn, synced)
    with MongoClient(mongo_uri) as client:
        docs = client[mongo_db].e
        # the documented mapping (docs/postgres-source.md), unchanged by the read-backs
        one, two = docs.find_one({"_id": 1}), docs.find_one({"_id": 2})
        assert (one["t"], one["n"], one["ia"]) == ("24:00:00", Decimal128("NaN"), "[0:1]={7,8}")
        assert (one["ts"], one["d"]) == ("294276-12-31 23:59:59.999999", "5874897-12-31")
        assert one["ta"] == '{{a,"b c"},{d,NULL}}' and one["note"] == "edge again"
        assert (two["ia"], two["n"], two["note"]) == ([1, None, 3], Decimal128("1.25"), "plain")

        # genuine edits at the target: doc 6 takes values with no Arrow form and its note
        # changes at the source (a native batch); doc 3's note changes at the target and its
        # time at the source
        docs.update_one({"_id": 6}, {"$set": {"t": "24:00:00", "n": Decimal128("NaN")}})
        docs.update_one({"_id": 3}, {"$set": {"note": "target edit"}})
        before = {d["_id"]: d for d in docs.find({"_id": {"$in": [3, 6]}})}
        conflicting_source_edits(cli, pg_dsn)
        after = {d["_id"]: d for d in docs.find({"_id": {"$in": [3, 6]}})}
    if strategy in ("local", "manual"):
        assert after == before
    elif strategy == "merge":
        assert (after[6]["t"], after[6]["n"], after[6]["note"]) == (
            "24:00:00", Decimal128("NaN"), "source edit",
        )  # fmt: skip
        assert (after[3]["t"], after[3]["note"]) == ("11:00:00", "target edit")
    else:  # the source wins
        # (a time is its ISO text: Python's from a native batch, Postgres's from a text one)
        assert dt.time.fromisoformat(after[6]["t"]) == dt.time(12, 34, 56, 789000)
        assert (after[6]["n"], after[6]["note"]) == (Decimal128("1.25"), "source edit")
        assert (after[3]["t"], after[3]["note"]) == ("11:00:00", "other edge")


def test_verify_reads_target_values_without_arrow_form(tmp_path, pg_dsn, pg_target_dsn):
    """``verify`` scans the target with the types the source's batches have: a target value
    with no Arrow form where the source holds an ordinary one is a difference, not a crash."""
    execute(
        pg_dsn,
        "CREATE TABLE e (id int PRIMARY KEY, t time, n numeric(12,2), ia int[], ts timestamp)",
        "INSERT INTO e VALUES (1, '10:00', 1.5, '{1}', '2024-01-01'), (2, '11:00', 2, '{2}', NULL)",
    )
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn}
    cli = CLI(tmp_path, CONFIG.format(conflicts="{strategy: remote}"), env)
    cli.run("backfill")
    assert cli.run("verify").returncode == 0
    execute(
        pg_target_dsn,
        "UPDATE e SET t = '24:00', n = 'NaN', ia = '{{1},{2}}', ts = '294276-01-01' WHERE id = 2",
    )
    verify = cli.run("verify", "--json", check=False)
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert "Traceback" not in verify.stderr
    for shown in ("24:00:00", "NaN", "{{1},{2}}", "294276-01-01 00:00:00"):
        assert shown in verify.stdout
    execute(pg_target_dsn, "UPDATE e SET t = '11:00', n = 2, ia = '{2}', ts = NULL WHERE id = 2")
    assert cli.run("verify").returncode == 0
