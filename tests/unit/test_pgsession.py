"""The session settings every engine connection to Postgres pins (syncengine/pgsession.py)."""

from __future__ import annotations

import shlex

from syncengine.pgsession import PINNED_OPTIONS, SETTINGS, pin_sync, startup_options


def _settings(options: str) -> dict[str, str]:
    """What the server makes of ``-c name=value`` options: the last of each name wins."""
    words = shlex.split(options)
    pairs = [words[i + 1] for i, w in enumerate(words) if w == "-c"]
    return dict(p.split("=", 1) for p in pairs)


def test_every_setting_is_pinned_in_the_startup_options():
    assert _settings(PINNED_OPTIONS) == {k: v.replace(" ", "") for k, v in SETTINGS.items()}


def test_a_dsns_own_options_are_kept_and_the_pinned_ones_win(monkeypatch):
    monkeypatch.delenv("PGOPTIONS", raising=False)
    dsn = "postgresql://u@h/db?options=-c%20search_path%3Dsales%20-c%20DateStyle%3DSQL"
    got = _settings(startup_options(dsn))
    assert got["search_path"] == "sales"
    assert got["DateStyle"] == "ISO,YMD"
    assert got["extra_float_digits"] == "3"


def test_pgoptions_is_kept_when_the_dsn_has_none(monkeypatch):
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=0 -c IntervalStyle=sql_standard")
    got = _settings(startup_options("host=h dbname=db"))
    assert got["statement_timeout"] == "0"
    assert got["IntervalStyle"] == "postgres"


def test_a_dsn_without_options_gets_the_pinned_ones(monkeypatch):
    monkeypatch.delenv("PGOPTIONS", raising=False)
    assert startup_options("host=h dbname=db") == PINNED_OPTIONS


class _Info:
    def __init__(self, version: int) -> None:
        self.server_version = version


class _Conn:
    """What :func:`pin_sync` reads and runs."""

    def __init__(self, version: int) -> None:
        self.info = _Info(version)
        self.ran: list[tuple[str, list[str]]] = []

    def execute(self, query: str, params: list[str]) -> None:
        self.ran.append((query, params))


def test_settings_a_server_lacks_are_not_sent_to_it():
    """``idle_session_timeout`` exists from PostgreSQL 14; setting it on 13 is an error."""
    for version, expected in ((130011, False), (140000, True), (150004, True)):
        conn = _Conn(version)
        pin_sync(conn)  # type: ignore[arg-type]
        ((query, params),) = conn.ran
        assert query.count("set_config") * 2 == len(params)
        pairs = dict(zip(params[::2], params[1::2], strict=True))
        assert ("idle_session_timeout" in pairs) is expected
        assert {k: pairs[k] for k in SETTINGS} == SETTINGS
