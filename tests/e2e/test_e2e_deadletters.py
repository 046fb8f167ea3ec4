"""Bad records go to dead letters while the rest continues; after a fix, replay applies them."""

from __future__ import annotations

import json
import textwrap

from tests.e2e.harness import CLI, execute, rows

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      codes:
        source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.items]}
        target: {type: postgres, dsn: "${TGT_DSN}"}
        mappings:
          - source: public.items
            fields:
              id: id
              n: EXPRESSION
        on_error: ON_ERROR
    """
)


def make(tmp_path, pg_dsn, pg_target_dsn, expression, on_error="dead_letter"):
    config = CONFIG.replace("EXPRESSION", expression).replace("ON_ERROR", on_error)
    return CLI(tmp_path, config, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})


def test_bad_rows_are_dead_lettered_then_replayed_after_a_fix(tmp_path, pg_dsn, pg_target_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE items (id int PRIMARY KEY, code text)",
        "INSERT INTO items SELECT i, CASE WHEN i % 10 = 0 THEN 'bad' ELSE i::text END "
        "FROM generate_series(1, 100) i",
    )
    cli = make(tmp_path, pg_dsn, pg_target_dsn, "cast(code AS int)")
    cli.run("sync", "--once")
    assert rows(pg_target_dsn, "SELECT count(*) FROM items") == [(90,)]
    letters = json.loads(cli.run("deadletters", "list", "--json").stdout)
    assert len(letters) == 10
    assert {letter["payload"]["code"] for letter in letters} == {"bad"}
    assert all("n" in letter["reason"] for letter in letters)
    shown = json.loads(cli.run("deadletters", "show", str(letters[0]["id"])).stdout)
    assert shown["payload"]["id"] % 10 == 0

    fixed = make(tmp_path, pg_dsn, pg_target_dsn, "cast(replace(code, 'bad', '-1') AS int)")
    result = fixed.run("deadletters", "replay", "--pipeline", "codes")
    assert "10 replayed, 0 dead-lettered again" in result.stdout
    assert rows(pg_target_dsn, "SELECT count(*) FROM items WHERE n = -1") == [(10,)]
    assert json.loads(fixed.run("deadletters", "list", "--json").stdout) == []
    fixed.run("verify")


def test_on_error_fail_stops_with_exit_1(tmp_path, pg_dsn, pg_target_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE items (id int PRIMARY KEY, code text)",
        "INSERT INTO items VALUES (1, '1'), (2, 'bad')",
    )
    cli = make(tmp_path, pg_dsn, pg_target_dsn, "cast(code AS int)", on_error="fail")
    result = cli.run("sync", "--once", check=False)
    assert result.returncode == 1
    assert "stopped on a bad record" in result.stderr and "Traceback" not in result.stderr


def test_a_letter_superseded_by_a_later_change_is_not_replayed(tmp_path, pg_dsn, pg_target_dsn):
    """A Postgres target keeps no per-key position for in-order changes (the checkpoint is
    their fence), so the pipeline marks a letter superseded when a later change of its key
    comes through; replay skips it with a message (its older change would overwrite the newer
    value) unless --force."""
    execute(
        pg_dsn,
        "CREATE TABLE items (id int PRIMARY KEY, code text)",
        "INSERT INTO items VALUES (1, '1'), (2, 'bad'), (3, 'bad')",
    )
    cli = make(tmp_path, pg_dsn, pg_target_dsn, "cast(code AS int)")
    cli.run("sync", "--once")
    cli.run("sync", "--once")  # the stream from here on
    execute(pg_dsn, "UPDATE items SET code = 'bad' WHERE id = 1", "UPDATE items SET code = '22'"
            " WHERE id = 2")  # fmt: skip
    cli.run("sync", "--once")  # 1 dead-lettered; 2's later change supersedes its letter
    assert rows(pg_target_dsn, "SELECT id, n FROM items ORDER BY id") == [(1, 1), (2, 22)]
    letters = {x["payload"]["id"]: x for x in json.loads(cli.run("deadletters", "list",
                                                                  "--json").stdout)}  # fmt: skip
    assert set(letters) == {1, 2, 3}
    assert letters[2]["superseded"] and not letters[1]["superseded"]
    assert not letters[3]["superseded"]

    fixed = make(tmp_path, pg_dsn, pg_target_dsn, "cast(replace(code, 'bad', '-1') AS int)")
    result = fixed.run("deadletters", "replay", "--pipeline", "codes")
    assert f"dead letter {letters[2]['id']} (public.items) skipped: superseded" in result.stdout
    assert "--force" in result.stdout and "2 replayed, 0 dead-lettered again" in result.stdout
    assert rows(pg_target_dsn, "SELECT id, n FROM items ORDER BY id") == [(1, -1), (2, 22),
                                                                          (3, -1)]  # fmt: skip
    fixed.run("verify")
    left = json.loads(fixed.run("deadletters", "list", "--json").stdout)
    assert [x["id"] for x in left] == [letters[2]["id"]]

    forced = fixed.run("deadletters", "replay", "--pipeline", "codes", "--force")
    assert "1 replayed" in forced.stdout  # the old change, applied as asked
    assert rows(pg_target_dsn, "SELECT n FROM items WHERE id = 2") == [(-1,)]
