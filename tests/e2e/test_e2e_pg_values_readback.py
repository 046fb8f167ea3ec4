"""Every strategy that reads the target back meets Postgres values with no Arrow form (issue
23): a Postgres target holding ``time '24:00'``, ``NaN`` in ``numeric(p,s)``, 2-D arrays,
infinities, BC dates and years past 294247 is read back for conflict detection without
stopping the pipeline, without false conflicts, and a genuine edit at the target is still
caught. Postgres → Postgres, real servers, compared as Postgres renders each value."""

from __future__ import annotations

import json
import textwrap

import pytest

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


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_read_back_of_values_without_arrow_form(tmp_path, pg_dsn, pg_target_dsn, strategy):
    seed(pg_dsn)
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn}
    cli = CLI(tmp_path, CONFIG.format(conflicts=STRATEGIES[strategy]), env)
    cli.run("backfill")
    assert rows(pg_target_dsn, RENDERED) == rows(pg_dsn, RENDERED)
    assert len(rows(pg_dsn, RENDERED)) == 6

    # rows 1-2 leave their edge values (a batch carrying every column natively, whose keys
    # the target holds with values that have no Arrow form); row 4 keeps them, note only
    execute(pg_dsn, f"UPDATE e SET {assignments(PLAIN)}, note = 'plain' WHERE id IN (1, 2)")
    synced(cli, pg_dsn, pg_target_dsn)
    execute(pg_dsn, "UPDATE e SET note = 'edge kept' WHERE id = 4")
    synced(cli, pg_dsn, pg_target_dsn)
    # the reverse: rows the target holds natively take edge values (text batch), and the
    # edge values change into other edge values
    execute(
        pg_dsn,
        "BEGIN",
        f"UPDATE e SET {assignments(edge_row(3))}, note = 'edge again' WHERE id IN (1, 5)",
        f"UPDATE e SET {assignments(edge_row(0))}, note = 'other edge' WHERE id = 3",
        "COMMIT",
    )
    synced(cli, pg_dsn, pg_target_dsn)
    # each edge column alone leaving its edge value, the others untouched
    for column, plain in PLAIN.items():
        execute(pg_dsn, f"UPDATE e SET {column} = {literal(plain)} WHERE id = 4")
        synced(cli, pg_dsn, pg_target_dsn)

    # genuine edits at the target: row 6 (ordinary at the source) now holds edge values at the
    # target and its note changes at the source (a native batch); row 3 holds edge values on
    # both sides, its note is edited at the target and its time at the source
    execute(
        pg_target_dsn,
        f"UPDATE e SET t = '24:00', n = 'NaN', ia = '{{{{5,6}},{{7,8}}}}', ts = 'infinity' WHERE id = 6",
        "UPDATE e SET note = 'target edit' WHERE id = 3",
    )
    target_before = {r[0]: r for r in rows(pg_target_dsn, RENDERED)}
    execute(
        pg_dsn,
        "UPDATE e SET note = 'source edit' WHERE id = 6",
        "UPDATE e SET t = '11:00' WHERE id = 3",
    )
    result = cli.run("sync", "--once")
    assert "2 " + CONFLICTS in result.stderr, result.stderr
    source = {r[0]: r for r in rows(pg_dsn, RENDERED)}
    target = {r[0]: r for r in rows(pg_target_dsn, RENDERED)}
    for i in (1, 2, 4, 5):
        assert target[i] == source[i]
    t_col = 1 + list(EDGES).index("t")
    if strategy in ("remote+audit", "timestamp"):  # the source wins
        assert target[3] == source[3] and target[6] == source[6]
    elif strategy in ("local", "manual"):  # the target's rows stay (manual: parked)
        assert target[3] == target_before[3] and target[6] == target_before[6]
    else:  # merge: each side's edit
        assert target[6] == (*target_before[6][:-1], "source edit")
        assert target[3][t_col] == "11:00:00" and target[3][-1] == "target edit"
        assert target[3][:t_col] == source[3][:t_col]
    if strategy == "manual":
        parked = json.loads(cli.run("conflicts", "list", "--json").stdout)
        assert sorted(c["key"]["id"] for c in parked) == [3, 6]
        local6 = next(c["local"] for c in parked if c["key"]["id"] == 6)
        assert (local6["t"], local6["n"]) == ("24:00:00", "NaN")
        for conflict in parked:
            cli.run("conflicts", "resolve", str(conflict["id"]), "--take", "remote")
        assert rows(pg_target_dsn, RENDERED) == rows(pg_dsn, RENDERED)

    # after the conflicts, later changes to those keys flow again without a conflict where the
    # target took the source's row
    if strategy != "local" and strategy != "merge":
        execute(pg_dsn, f"UPDATE e SET {assignments(edge_row(1))}, note = 'last' WHERE id IN (3, 6)")
        synced(cli, pg_dsn, pg_target_dsn)
    verify = cli.run("verify", check=False)
    differs = strategy in ("local", "merge")  # the target kept its own edits
    assert verify.returncode == (1 if differs else 0), verify.stdout + verify.stderr
    assert "Traceback" not in verify.stderr
