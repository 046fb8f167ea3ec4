"""Source connection defaults: the user's DSN (and PGCONNECT_TIMEOUT) always win over ours."""

from __future__ import annotations

from syncengine.sources.postgres.deadline import LIBPQ_DEFAULTS, libpq_defaults


def test_defaults_fill_only_what_the_dsn_leaves_unset(monkeypatch):
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    assert libpq_defaults("host=db dbname=app") == LIBPQ_DEFAULTS
    assert set(LIBPQ_DEFAULTS) >= {"connect_timeout", "keepalives_idle", "tcp_user_timeout"}
    keyword = libpq_defaults("host=db connect_timeout=3 tcp_user_timeout=0 keepalives_idle=5")
    assert {"connect_timeout", "tcp_user_timeout", "keepalives_idle"}.isdisjoint(keyword)
    uri = libpq_defaults("postgresql://u:pw@db/app?keepalives=0&connect_timeout=2")
    assert "keepalives" not in uri and "connect_timeout" not in uri
    assert uri["tcp_user_timeout"] == LIBPQ_DEFAULTS["tcp_user_timeout"]


def test_adjusted_defaults_still_yield_to_the_user(monkeypatch):
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    assert libpq_defaults("host=db", connect_timeout=5)["connect_timeout"] == 5
    assert "connect_timeout" not in libpq_defaults("host=db connect_timeout=20", connect_timeout=5)
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "7")
    assert "connect_timeout" not in libpq_defaults("host=db", connect_timeout=5)
