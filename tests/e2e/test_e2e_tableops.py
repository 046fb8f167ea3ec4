"""Per-table operations on a running pipeline (issue 19): re-snapshot one table while writers
hammer it and another table, handed to the daemon through the state store, SIGKILLed in the
middle and resumed per chunk; the target ends equal to the source and a per-key counter read
from the target never moves backwards. Postgres and Mongo sources, real servers."""

from __future__ import annotations

import signal
import sqlite3
import textwrap
import time

import psycopg
import pytest
from pymongo import MongoClient

from tests.e2e.harness import CLI, execute, rows, wait_for
from tests.e2e.tableops_support import CounterAudit, Loop, mongo_pair

PG_CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      p:
        source:
          type: postgres
          dsn: ${SRC_DSN}
          tables: [public.a, public.b]
          snapshot_chunk_rows: 150
        target: {type: postgres, dsn: "${TGT_DSN}"}
        batch: {max_rows: 500, max_wait: 100ms}
    """
)
ROWS = 3000


def _requests(cli: CLI) -> list[tuple[int, str, str]]:
    with sqlite3.connect(cli.dir / "state.db") as db:
        return db.execute("SELECT id, source_table, status FROM table_requests").fetchall()


def _chunks_done(cli: CLI) -> int:
    with sqlite3.connect(cli.dir / "state.db") as db:
        return db.execute(
            "SELECT COUNT(*) FROM chunks WHERE pipeline='p/tables' AND status='done'"
        ).fetchone()[0]


def _pg_writer(dsn: str, table: str) -> Loop:
    conn = psycopg.connect(dsn, autocommit=True)
    deleted = set(range(1, 40)) if table == "a" else set()

    def step(rng) -> None:
        key = rng.randint(1, ROWS)
        if key in deleted:
            return
        if table == "c" and rng.random() < 0.05:  # deleted while c is added: no sweep then
            deleted.add(key)
            conn.execute("DELETE FROM c WHERE id = %s", (key,))
            return
        conn.execute(
            f"UPDATE {table} SET n = n + 1, pad = md5(random()::text) WHERE id = %s", (key,)
        )

    return Loop(step)


def test_pg_resnapshot_under_writes_survives_sigkill(tmp_path, pg_dsn, pg_target_dsn):
    for table in ("a", "b"):
        execute(
            pg_dsn,
            f"CREATE TABLE {table} (id int PRIMARY KEY, n int NOT NULL, pad text)",
            f"INSERT INTO {table} SELECT i, 0, md5(i::text) FROM generate_series(1, {ROWS}) i",
        )
    cli = CLI(tmp_path, PG_CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    daemon = cli.start("run")
    try:
        wait_for(lambda: rows(pg_target_dsn, "SELECT count(*) FROM b")[0][0] == ROWS, 120)
        wait_for(lambda: rows(pg_target_dsn, "SELECT count(*) FROM a")[0][0] == ROWS, 60)
        # drift the re-snapshot must repair: target-side edits the stream never sent, and keys
        # the source does not have
        execute(pg_target_dsn, "UPDATE a SET pad = 'drift' WHERE id % 10 = 0")
        execute(pg_target_dsn, "INSERT INTO a VALUES (90001, 0, 'ghost'), (90002, 0, 'ghost')")
        writers = [_pg_writer(pg_dsn, "a"), _pg_writer(pg_dsn, "b")]
        audit = CounterAudit(lambda: dict(rows(pg_target_dsn, "SELECT id, n FROM a")))
        for loop in (*writers, audit.loop):
            loop.start()
        execute(pg_dsn, "DELETE FROM a WHERE id < 40")  # deletes while it streams
        out = cli.run("resnapshot", "--pipeline", "p", "--table", "public.a").stdout
        assert "handed to the running daemon" in out
        wait_for(lambda: _chunks_done(cli) >= 3, 120, 0.05)
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(30)
        assert [s for _, _, s in _requests(cli)] == ["running"]
        done_before = _chunks_done(cli)
        daemon = cli.start("run")
        wait_for(lambda: [s for _, _, s in _requests(cli)] == ["done"], 180, 0.2)
        assert done_before >= 3  # resumed per chunk, not started over (checked below by status)
        counts = [w.finish() for w in writers]
        assert min(counts) > 50  # the writers really ran during it
        for table in ("a", "b"):
            query = f"SELECT id, n, pad FROM {table} ORDER BY id"
            try:
                wait_for(lambda q=query: rows(pg_target_dsn, q) == rows(pg_dsn, q), 120)
            except AssertionError:
                differ = set(rows(pg_target_dsn, query)) ^ set(rows(pg_dsn, query))
                raise AssertionError(f"{table} differs: {sorted(differ)[:10]}") from None
        audit.finish()
        assert audit.reads > 10
        assert audit.backwards == []
        assert rows(pg_target_dsn, "SELECT count(*) FROM a WHERE pad = 'drift'") == [(0,)]
    finally:
        if daemon.poll() is None:
            assert cli.stop(daemon) == 0


def test_pg_resnapshot_foreground_and_where_checks(tmp_path, pg_dsn, pg_target_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE a (id int PRIMARY KEY, n int NOT NULL, pad text)",
        "CREATE TABLE b (id int PRIMARY KEY, n int NOT NULL, pad text)",
        "INSERT INTO a SELECT i, 0, 'x' FROM generate_series(1, 500) i",
    )
    cli = CLI(tmp_path, PG_CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    cli.run("sync", "--once")
    execute(pg_target_dsn, "UPDATE a SET pad = 'drift'")
    bad = cli.run(
        "resnapshot", "-p", "p", "--table", "a", "--where", "1=1; DROP TABLE a", check=False
    )
    assert bad.returncode == 2 and "not a statement" in bad.stderr + bad.stdout
    cli.run("resnapshot", "-p", "p", "--table", "a", "--where", "id <= 100")
    assert rows(pg_target_dsn, "SELECT count(*) FROM a WHERE pad = 'x'") == [(100,)]
    assert [s for _, _, s in _requests(cli)] == ["done"]
    # keys the source does not have (deleted while not captured) go, a --where run keeps them
    execute(pg_target_dsn, "INSERT INTO a VALUES (90001, 0, 'ghost'), (90002, 0, 'ghost')")
    cli.run("resnapshot", "-p", "p", "--table", "a", "--where", "id <= 100")
    assert rows(pg_target_dsn, "SELECT count(*) FROM a WHERE pad = 'ghost'") == [(2,)]
    cli.run("resnapshot", "-p", "p", "--table", "a")
    assert rows(pg_target_dsn, "SELECT count(*) FROM a WHERE pad = 'drift'") == [(0,)]
    query = "SELECT id, n, pad FROM a ORDER BY id"
    assert rows(pg_target_dsn, query) == rows(pg_dsn, query)


MONGO_CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      p:
        source:
          type: mongo
          uri: "${MONGO_URI}"
          database: SRC
          collections: [a, b]
          snapshot_chunk_docs: 150
        target: {type: mongo, uri: "${MONGO_URI}", database: TGT}
        batch: {max_rows: 500, max_wait: 100ms}
    """
)


@pytest.mark.own_mongo_server  # SIGKILLs a daemon writing to Mongo: see throwaway_mongo
def test_mongo_resnapshot_under_writes_survives_sigkill(tmp_path, mongo_uri, mongo_db):
    source_db, target_db = mongo_db, f"{mongo_db}_t"
    config = MONGO_CONFIG.replace("SRC", source_db).replace("TGT", target_db)
    cli = CLI(tmp_path, config, {"MONGO_URI": mongo_uri})
    client: MongoClient = MongoClient(mongo_uri)
    src, tgt = client[source_db], client[target_db]
    for name in ("a", "b"):
        src[name].insert_many([{"_id": i, "n": 0, "pad": str(i)} for i in range(1, ROWS + 1)])

    def writer(name: str) -> Loop:
        def step(rng) -> None:
            src[name].update_one({"_id": rng.randint(1, ROWS)}, {"$inc": {"n": 1}})

        return Loop(step)

    daemon = cli.start("run")
    try:
        wait_for(lambda: tgt["a"].count_documents({}) == ROWS, 120)
        wait_for(lambda: tgt["b"].count_documents({}) == ROWS, 60)
        tgt["a"].update_many({"_id": {"$mod": [10, 0]}}, {"$set": {"pad": "drift"}})
        tgt["a"].insert_many([{"_id": 90001, "n": 0, "pad": "ghost"}, {"_id": 90002, "n": 0}])
        writers = [writer("a"), writer("b")]
        audit = CounterAudit(lambda: {d["_id"]: d["n"] for d in tgt["a"].find({}, {"n": 1})})
        for loop in (*writers, audit.loop):
            loop.start()
        src["a"].delete_many({"_id": {"$lt": 40}})
        out = cli.run("resnapshot", "--pipeline", "p", "--table", "a").stdout
        assert "handed to the running daemon" in out
        wait_for(lambda: _chunks_done(cli) >= 2, 120, 0.05)
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(30)
        assert [s for _, _, s in _requests(cli)] == ["running"]
        daemon = cli.start("run")
        wait_for(lambda: [s for _, _, s in _requests(cli)] == ["done"], 180, 0.2)
        counts = [w.finish() for w in writers]
        assert min(counts) > 50
        for name in ("a", "b"):
            wait_for(
                lambda n=name: list(tgt[n].find().sort("_id")) == list(src[n].find().sort("_id")),
                120,
            )
        audit.finish()
        assert audit.reads > 10
        assert audit.backwards == []
        assert tgt["a"].count_documents({"pad": "drift"}) == 0
    finally:
        if daemon.poll() is None:
            assert cli.stop(daemon) == 0
        client.drop_database(target_db)
        client.close()


def _pg_config(tables: str) -> str:
    return PG_CONFIG.replace("[public.a, public.b]", tables)


def test_pg_reload_adds_and_removes_a_table_under_writes(tmp_path, pg_dsn, pg_target_dsn):
    for table in ("a", "b", "c"):
        execute(
            pg_dsn,
            f"CREATE TABLE {table} (id int PRIMARY KEY, n int NOT NULL, pad text)",
            f"INSERT INTO {table} SELECT i, 0, md5(i::text) FROM generate_series(1, {ROWS}) i",
        )
    # c also holds an out-of-line TOAST value the writers never change: pgoutput leaves it
    # unsent, and an update can reach a row of c the copy has not landed yet
    execute(
        pg_dsn,
        "ALTER TABLE c ADD COLUMN blob text",
        "ALTER TABLE c ALTER COLUMN blob SET STORAGE EXTERNAL",
        "UPDATE c SET blob = repeat(md5(id::text), 100)",
    )
    cli = CLI(
        tmp_path, _pg_config("[public.a, public.b]"), {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn}
    )
    daemon = cli.start("run")
    try:
        wait_for(lambda: rows(pg_target_dsn, "SELECT count(*) FROM b")[0][0] == ROWS, 120)
        wait_for(lambda: rows(pg_target_dsn, "SELECT count(*) FROM a")[0][0] == ROWS, 60)
        writers = [_pg_writer(pg_dsn, t) for t in ("a", "b", "c")]
        for loop in writers:
            loop.start()
        # a bad config is refused by the command, and by the daemon on SIGHUP: it keeps running
        cli.config.write_text(
            _pg_config("[public.a, public.b]").replace("max_rows: 500", "max_rows: -1")
        )
        bad = cli.run("reload", check=False)
        assert bad.returncode == 2 and "batch" in bad.stderr + bad.stdout
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in cli.daemon_logs(), 30)
        assert daemon.poll() is None
        # add c: the running stream takes it (no restart: the stream of a and b goes on)
        cli.config.write_text(_pg_config("[public.a, public.b, public.c]"))
        assert "asked the daemon" in cli.run("reload").stdout
        wait_for(lambda: [r[1:] for r in _requests(cli)] == [("public.c", "done")], 180, 0.2)
        logs = cli.daemon_logs()
        assert "p: now capturing public.c without a restart" in logs
        assert "restarting" not in logs and "stream phases" not in logs  # (logged at its end)
        # c's target table was empty: its source deletes arrive through the stream alone
        assert "public.c was empty at the target before the copy: no sweep" in logs
        time.sleep(1)
        for loop in writers:
            loop.finish()
        for table in ("a", "b", "c"):
            blob = ", md5(blob)" if table == "c" else ""
            query = f"SELECT id, n, pad{blob} FROM {table} ORDER BY id"
            wait_for(lambda q=query: rows(pg_target_dsn, q) == rows(pg_dsn, q), 120)
        # remove c: its changes stop arriving, a and b keep flowing
        cli.config.write_text(_pg_config("[public.a, public.b]"))
        cli.run("reload")
        wait_for(lambda: "tables removed public.c" in cli.daemon_logs(), 30)
        wait_for(
            lambda: "publication syncengine_p: no longer publishes public.c" in cli.daemon_logs(),
            60,
        )
        frozen = rows(pg_target_dsn, "SELECT id, n, pad FROM c ORDER BY id")
        execute(pg_dsn, "UPDATE c SET n = n + 100", "UPDATE a SET n = n + 100 WHERE id <= 10")
        query = "SELECT id, n, pad FROM a ORDER BY id"
        wait_for(lambda: rows(pg_target_dsn, query) == rows(pg_dsn, query), 60)
        time.sleep(1)
        assert rows(pg_target_dsn, "SELECT id, n, pad FROM c ORDER BY id") == frozen
        assert rows(pg_target_dsn, "SELECT id, n, pad FROM b ORDER BY id") == rows(
            pg_dsn, "SELECT id, n, pad FROM b ORDER BY id"
        )
        assert daemon.poll() is None
    finally:
        if daemon.poll() is None:
            assert cli.stop(daemon) == 0


def test_mongo_reload_adds_and_removes_a_collection(tmp_path, mongo_uri, mongo_db):
    pair = mongo_pair(tmp_path, MONGO_CONFIG, mongo_uri, mongo_db, "abc", ROWS)
    cli, src, tgt = pair.cli, pair.src, pair.tgt
    config = cli.config.read_text()

    def writer(name: str) -> Loop:
        def step(rng) -> None:
            src[name].update_one({"_id": rng.randint(1, ROWS)}, {"$inc": {"n": 1}})

        return Loop(step)

    daemon = cli.start("run")
    try:
        wait_for(lambda: tgt["b"].count_documents({}) == ROWS, 120)
        writers = [writer(n) for n in ("a", "b", "c")]
        for loop in writers:
            loop.start()
        cli.config.write_text(config.replace("[a, b]", "[a, b, c]"))
        cli.run("reload")
        wait_for(lambda: [r[1:] for r in _requests(cli)] == [("c", "done")], 180, 0.2)
        time.sleep(1)
        for loop in writers:
            loop.finish()
        for name in ("a", "b", "c"):
            wait_for(
                lambda n=name: list(tgt[n].find().sort("_id")) == list(src[n].find().sort("_id")),
                120,
            )
        cli.config.write_text(config)
        cli.run("reload")
        # logged once the old stream (which still read c) has stopped: c's changes from here
        # on are read, if at all, by the restarted stream's new filter (a fixed wait after the
        # reload's plan line raced the old stream's drain under load)
        wait_for(lambda: "c no longer captured" in cli.daemon_logs(), 60)
        frozen = list(tgt["c"].find().sort("_id"))
        src["c"].update_many({}, {"$inc": {"n": 100}})
        src["a"].update_many({"_id": {"$lte": 10}}, {"$inc": {"n": 100}})
        wait_for(lambda: list(tgt["a"].find().sort("_id")) == list(src["a"].find().sort("_id")), 60)
        time.sleep(1)
        assert list(tgt["c"].find().sort("_id")) == frozen
        assert daemon.poll() is None
    finally:
        if daemon.poll() is None:
            assert cli.stop(daemon) == 0
        pair.close()


MAPPED_CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      p:
        source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.m]}
        target: {type: postgres, dsn: "${TGT_DSN}"}
        mappings:
          - source: public.m
            target: mm
            key: [ident]
            fields: {ident: id + 1000, label: upper(name), state: status}
            filter: status <> 'draft'
    """
)


def test_pg_resnapshot_sweep_reads_the_key_through_the_mapping(tmp_path, pg_dsn, pg_target_dsn):
    """The sweep reads the source key and the filter's columns alone: a computed key, and a
    filter on a column no key reads, decide which target rows go as the whole mapping does."""
    execute(
        pg_dsn,
        "CREATE TABLE m (id int PRIMARY KEY, name text, status text, pad text)",
        "INSERT INTO m SELECT g, 'n' || g, CASE WHEN g % 5 = 0 THEN 'draft' ELSE 'ok' END, "
        "'x' FROM generate_series(1, 60) g",
    )
    cli = CLI(tmp_path, MAPPED_CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    cli.run("sync", "--once")
    assert rows(pg_target_dsn, "SELECT count(*), min(ident) FROM mm") == [(48, 1001)]
    # by hand at the target: a key the source never had, and a row the filter drops
    execute(
        pg_target_dsn,
        "INSERT INTO mm (ident, label, state) VALUES (99999, 'GHOST', 'ok'), (1005, 'N5', 'draft')",
        "UPDATE mm SET label = 'drift' WHERE ident = 1001",
    )
    cli.run("resnapshot", "-p", "p", "--table", "m")
    expected = [(g + 1000, f"N{g}", "ok") for g in range(1, 61) if g % 5]
    assert rows(pg_target_dsn, "SELECT ident, label, state FROM mm ORDER BY ident") == expected
