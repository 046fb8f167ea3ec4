"""TLS options pass through to the drivers: asking for TLS never silently falls back.

The test servers speak no TLS, so every option that demands it must fail, clearly (a message
naming SSL/TLS or the missing CA file, exit code 2 or 3, no traceback), and options that do
not demand it must work. That proves the option reached libpq / PyMongo unchanged.
"""

from __future__ import annotations

import textwrap

import pytest

from tests.e2e.harness import CLI, execute, rows

PG_TO_PG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      tls:
        source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.items]}
        target: {type: postgres, dsn: "${TGT_DSN}"}
    """
)
MONGO_TO_PG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      mtls:
        source: {type: mongo, uri: "${MONGO_URI}", database: app, collections: [users]}
        target: {type: postgres, dsn: "${TGT_DSN}"}
    """
)


def opt(dsn: str, options: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}{options}"


def assert_refused(result, *words: str) -> None:
    out = result.stdout + result.stderr
    assert result.returncode in (2, 3), f"exit {result.returncode}: {out}"
    assert "Traceback" not in out, out
    assert any(w.lower() in out.lower() for w in words), f"no mention of {words}: {out}"


@pytest.fixture
def items(pg_dsn):
    execute(pg_dsn, "CREATE TABLE items (id int PRIMARY KEY)", "INSERT INTO items VALUES (1)")


@pytest.mark.parametrize("side", ["SRC_DSN", "TGT_DSN"])
def test_pg_sslmode_require_fails_naming_ssl(tmp_path, items, pg_dsn, pg_target_dsn, side):
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn}
    env[side] = opt(env[side], "sslmode=require")
    cli = CLI(tmp_path, PG_TO_PG, env)
    assert_refused(cli.run("validate", check=False), "ssl")
    assert_refused(cli.run("sync", "--once", check=False, timeout=180), "ssl")
    assert rows(pg_target_dsn, "SELECT count(*) FROM pg_tables WHERE tablename = 'items'") == [
        (0,)
    ], "synced without the TLS the config demanded"


def test_pg_missing_ca_file_is_named(tmp_path, items, pg_dsn, pg_target_dsn):
    src = opt(pg_dsn, "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
    cli = CLI(tmp_path, PG_TO_PG, {"SRC_DSN": src, "TGT_DSN": pg_target_dsn})
    assert_refused(cli.run("validate", check=False), "ca.pem", "ssl")


def test_pg_sslmode_disable_passes_through_and_syncs(tmp_path, items, pg_dsn, pg_target_dsn):
    env = {
        "SRC_DSN": opt(pg_dsn, "sslmode=disable"),
        "TGT_DSN": opt(pg_target_dsn, "sslmode=prefer"),
    }
    cli = CLI(tmp_path, PG_TO_PG, env)
    cli.run("sync", "--once")
    assert rows(pg_target_dsn, "SELECT id FROM items") == [(1,)]


@pytest.mark.parametrize(
    "options, words",
    [
        ("tls=true", ("ssl", "tls")),
        ("tls=true&tlsCAFile=/nonexistent/ca.pem", ("ca.pem", "ssl", "tls")),
    ],
)
def test_mongo_tls_options_fail_naming_tls(tmp_path, mongo_uri, pg_target_dsn, options, words):
    uri = opt(mongo_uri, options + "&serverSelectionTimeoutMS=3000")
    cli = CLI(tmp_path, MONGO_TO_PG, {"MONGO_URI": uri, "TGT_DSN": pg_target_dsn})
    assert_refused(cli.run("validate", check=False), *words)
    assert_refused(cli.run("sync", "--once", check=False, timeout=180), *words)
