"""A mesh of three Postgres databases through the real CLI: a change made on one node reaches
each other node once, by its direct link (never again through the third node), concurrent
edits converge by last writer wins, and under writers on all three nodes everything settles:
all three identical, the applied-change counters still."""

from __future__ import annotations

import json
import re
import textwrap
import threading
import time

import psycopg
import pytest

from tests.e2e.harness import CLI, execute, rows, wait_for
from tests.e2e.test_e2e_two_way import SNAPSHOT, TABLE
from tests.e2e.test_e2e_two_way_kill import (
    HISTORY,
    HOT,
    applied_total,
    free_port,
    quiet,
    start_writers,
)

NODES = ("a", "b", "c")
CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    meshes:
      shop:
        nodes:
          a: {dsn: "${A_DSN}"}
          b: {dsn: "${B_DSN}"}
          c: {dsn: "${C_DSN}"}
        tables: [public.items]
        conflicts: {strategy: timestamp}
        batch: {max_rows: 1000, max_wait: 100ms}
    """
)
DIRECTIONS = [f"shop.{x}>{y}" for x in NODES for y in NODES if x != y]
WRITE_SECONDS = 20
#: who wrote each history row: the replication origin of the transaction that committed it
WRITERS = (
    "SELECT h.op, h.id, h.name, h.qty, o.roname FROM items_history h "
    "LEFT JOIN pg_replication_origin o "
    "ON o.roident = (pg_xact_commit_timestamp_origin(h.xmin)).roident"
)


@pytest.fixture
def nodes(pg_dsn, pg_target_dsn, pg_third_dsn):
    """Three databases with the table and its write history; the first holds rows."""
    dsns = dict(zip(NODES, (pg_dsn, pg_target_dsn, pg_third_dsn), strict=True))
    for dsn in dsns.values():
        execute(dsn, TABLE, *HISTORY)
    seed = f"INSERT INTO items SELECT i, 'n', 0, now() FROM generate_series(1, {HOT}) i"
    execute(dsns["a"], seed)
    yield dsns
    # origins are the cluster's, not a database's: leave none behind for the next test
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for name in DIRECTIONS:
            origin = "syncengine_" + name.replace(".", "__").replace(">", "__")
            if conn.execute("SELECT pg_replication_origin_oid(%s)", (origin,)).fetchone()[0]:
                conn.execute("SELECT pg_replication_origin_drop(%s)", (origin,))


def make_cli(tmp_path, dsns: dict[str, str]) -> CLI:
    return CLI(tmp_path, CONFIG, {f"{n.upper()}_DSN": dsn for n, dsn in dsns.items()})


def applied(result) -> dict[str, int]:
    """``name: N change(s) applied`` lines of ``sync --once`` by direction."""
    return {
        m[1]: int(m[2])
        for m in re.finditer(r"^(\S+): (\d+) change\(s\) applied", result.stdout, re.M)
    }


def all_equal(dsns: dict[str, str]) -> bool:
    first, *others = (rows(dsn, SNAPSHOT) for dsn in dsns.values())
    return all(other == first for other in others)


def differences(dsns: dict[str, str]) -> str:
    """The keys the nodes disagree on, each with every write to it on every node (time, op,
    values, the origin that wrote it: none for a person): what to read when they differ."""
    held = {node: set(rows(dsn, SNAPSHOT)) for node, dsn in dsns.items()}
    every = set().union(*held.values())
    keys = sorted({r[0] for r in every if any(r not in h for h in held.values())})
    lines = []
    for key in keys:
        held_key = ", ".join(f"{n}={[r for r in held[n] if r[0] == key]}" for n in dsns)
        lines.append(f"id {key}: {held_key}")
        lines.append(history_of(dsns, key))
    return "\n".join(lines)


def history_of(dsns: dict[str, str], key: object) -> str:
    """Every write to ``key`` on every node: time, op, values, the origin that wrote it."""
    lines = []
    for node, dsn in dsns.items():
        for row in rows(
            dsn,
            "SELECT to_char(h.at, 'HH24:MI:SS.US'), h.op, h.name, h.qty, o.roname "
            "FROM items_history h LEFT JOIN pg_replication_origin o "
            "ON o.roident = (pg_xact_commit_timestamp_origin(h.xmin)).roident "
            "WHERE h.id = %s ORDER BY h.at",
            (key,),
        ):
            lines.append(f"  {node}: " + " ".join(str(v) for v in row))
    return "\n".join(lines)


def carried(dsn: str) -> list[tuple[object, ...]]:
    """(op, id, name, origin) of every write the engine made on a node after the seed."""
    return [
        (op, key, name, origin)
        for op, key, name, _, origin in rows(dsn, WRITERS)
        if origin is not None and name != "n"
    ]


def test_each_change_reaches_every_node_once_by_its_direct_link(tmp_path, nodes):
    cli = make_cli(tmp_path, nodes)
    cli.run("sync", "--once")  # a seeds b and c; every direction's slot from here
    assert all_equal(nodes)
    execute(nodes["a"], "UPDATE items SET name = 'from a' WHERE id = 1")
    execute(nodes["b"], "INSERT INTO items VALUES (99, 'from b', 9, now())")
    execute(nodes["c"], "DELETE FROM items WHERE id = 2")
    first = applied(cli.run("sync", "--once"))
    assert first == dict.fromkeys(DIRECTIONS, 1), first
    assert all_equal(nodes)
    # nothing comes back and nothing goes round: the engine's writes are echoes to their
    # sibling and skipped by every other direction
    for _ in range(2):
        again = applied(cli.run("sync", "--once"))
        assert again == dict.fromkeys(DIRECTIONS, 0), again
    # each node holds each other node's change once, written by that node's direction to it
    o = "syncengine_shop__"
    expected = {
        "a": {("i", 99, "from b", o + "b__a"), ("d", 2, None, o + "c__a")},
        "b": {("u", 1, "from a", o + "a__b"), ("d", 2, None, o + "c__b")},
        "c": {("u", 1, "from a", o + "a__c"), ("i", 99, "from b", o + "b__c")},
    }
    for node, dsn in nodes.items():
        assert sorted(carried(dsn), key=str) == sorted(expected[node], key=str), node
    # --pipeline names the mesh: status shows its six directions, each with its checkpoint
    report = json.loads(cli.run("status", "--json", "--pipeline", "shop").stdout)
    directions = {info["pipeline"]: info["direction"] for info in report}
    assert directions == {name: name[5:].replace(">", "->") for name in DIRECTIONS}
    assert all(info["checkpoint"] for info in report), report


def test_concurrent_edits_on_three_nodes_converge_to_the_latest(tmp_path, nodes):
    cli = make_cli(tmp_path, nodes)
    cli.run("sync", "--once")
    # id 1 updated on all three (c last), id 2 updated on a and deleted on b later, id 3
    # deleted on c and updated on b later
    edits = [
        ("a", "UPDATE items SET name = 'a' WHERE id IN (1, 2)"),
        ("c", "DELETE FROM items WHERE id = 3"),
        ("b", "UPDATE items SET name = 'b' WHERE id IN (1, 3)"),
        ("b", "DELETE FROM items WHERE id = 2"),
        ("c", "UPDATE items SET name = 'c' WHERE id = 1"),
    ]
    for node, statement in edits:
        execute(nodes[node], statement)
        time.sleep(0.01)  # distinct commit times
    for _ in range(4):
        if applied(cli.run("sync", "--once")) == dict.fromkeys(DIRECTIONS, 0):
            break
    else:
        raise AssertionError("the directions kept applying changes (ping-pong)")
    assert all_equal(nodes)
    assert rows(nodes["a"], "SELECT id, name FROM items WHERE id <= 3 ORDER BY id") == [
        (1, "c"),
        (3, "b"),
    ]


def test_writers_on_three_nodes_converge_without_ping_pong(tmp_path, nodes):
    cli = make_cli(tmp_path, nodes)
    cli.run("sync", "--once")
    port = free_port()
    daemon = cli.start("run", "--metrics-port", str(port))
    stop = threading.Event()
    threads, counts = start_writers([(d, s) for s, d in nodes.items()], stop)
    try:
        time.sleep(WRITE_SECONDS)
        stop.set()
        for thread in threads:
            thread.join(30)
        assert sum(counts) > 300, counts
        try:
            wait_for(lambda: all_equal(nodes), timeout=90)
        except AssertionError:
            raise AssertionError(differences(nodes)) from None
        # quiet: first two seconds without a write (a last correction may follow a moment of
        # equal nodes), then five more: nothing echoes, nothing goes round the mesh
        wait_for(lambda: applied_total(port) > 0, timeout=30)
        wait_for(lambda: quiet(port, 2), timeout=60)
        settled = applied_total(port)
        time.sleep(5)
        assert applied_total(port) == settled
        assert all_equal(nodes)
    finally:
        stop.set()
        assert cli.stop(daemon) == 0
    # every value a person wrote on one node was written on each other node at most once,
    # and only by the direct link from the node where it was made (a correction may write a
    # node's own value back to it: not counted here)
    for node, dsn in nodes.items():
        seen: dict[tuple[object, ...], str] = {}
        for op, key, name, origin in carried(dsn):
            maker = str(name)[0]  # the writer names values after its node
            if op == "d" or name is None or maker == node:
                continue
            assert origin == f"syncengine_shop__{maker}__{node}", (node, op, key, name, origin)
            twice = f"{name} written twice at {node}:\n{history_of(nodes, key)}"
            assert (op, key, name) not in seen, twice
            seen[(op, key, name)] = origin
        assert seen, f"nothing carried to {node}"


def test_validate_refuses_a_strategy_that_cannot_converge_in_a_mesh(tmp_path):
    config = CONFIG.replace("{strategy: timestamp}", "{prefer: source}")
    env = {f"{n.upper()}_DSN": f"dbname={n}" for n in NODES}
    result = CLI(tmp_path, config, env).run("validate", check=False)
    assert result.returncode == 2, result
    assert "meshes.shop.conflicts.prefer: not for a mesh" in result.stdout + result.stderr


def test_a_delete_meeting_a_row_another_node_removed_still_corrects_its_provisional_write(
    tmp_path, nodes
):
    """The order of one race of the writers test, step by step: b's older update reaches c
    over c's newer delete (provisionally: the delete's time is unknown at c); a learns the
    delete first and corrects b; c's own delete then finds b's row gone, already recorded
    at its version, and writes nothing. Its tombstone note must still reach b's reader, or
    nothing corrects c: the only echo of c's delete is that note."""
    cli = make_cli(tmp_path, nodes)
    cli.run("sync", "--once")

    def run(direction: str) -> None:
        cli.run("sync", "--once", "--pipeline", f"shop.{direction}")

    execute(nodes["b"], "UPDATE items SET name = 'b older' WHERE id = 1")
    time.sleep(0.01)
    execute(nodes["c"], "DELETE FROM items WHERE id = 1")
    run("b>a")  # b's update to a
    run("c>a")  # c's newer delete at a
    run("a>c")  # its echo: c holds no row, nothing to correct
    run("b>c")  # b's update over c's delete: provisional
    run("a>b")  # a's echo of b's update, now a delete: corrects b
    run("c>b")  # c's delete: b's row is gone already, at the delete's version
    assert rows(nodes["b"], "SELECT id FROM items WHERE id = 1") == []
    for _ in range(4):
        if applied(cli.run("sync", "--once")) == dict.fromkeys(DIRECTIONS, 0):
            break
    else:
        raise AssertionError("the directions kept applying changes (ping-pong)")
    assert all_equal(nodes), differences(nodes)
    assert rows(nodes["c"], "SELECT id FROM items WHERE id = 1") == []
