"""The session settings every engine connection to Postgres pins (syncengine/pgsession.py)."""

from __future__ import annotations

import shlex

from syncengine.pgsession import PINNED_OPTIONS, SETTINGS, startup_options


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
