"""The retained-WAL warning is logged when it appears, then only when it doubled or 10 min
passed: the daemon probes lag every 5 s, and a long catch-up printed it every time."""

from __future__ import annotations

import logging

from syncengine.sources.base import SourceLag
from syncengine.sources.postgres import admin


def _lag(mb: int | None) -> SourceLag:
    details: dict[str, object] = {"warning": f"slot s retains {mb} MB of WAL"} if mb else {}
    return SourceLag("0/0", retained_wal_bytes=(mb or 0) * 1024 * 1024, details=details)


def test_logged_when_it_appears_doubles_or_every_ten_minutes(caplog, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(admin.time, "monotonic", lambda: clock[0])
    warnings = admin.RetainedWalWarnings(every=600)
    with caplog.at_level(logging.WARNING, logger="syncengine.sources.postgres"):
        for mb in (1100, 1200, 1500, 2100, 2300, 4300):  # a probe every 5 s
            warnings.note(_lag(mb))
            clock[0] += 5
        clock[0] += 600
        warnings.note(_lag(4400))  # ten minutes on: once more
        warnings.note(_lag(None))  # caught up: the next crossing is news again
        warnings.note(_lag(1100))
    logged = [r.getMessage() for r in caplog.records]
    assert logged == [
        "slot s retains 1100 MB of WAL",
        "slot s retains 2300 MB of WAL",
        "slot s retains 4400 MB of WAL",
        "slot s retains 1100 MB of WAL",
    ]


def test_nothing_logged_below_the_threshold(caplog):
    with caplog.at_level(logging.WARNING):
        admin.RetainedWalWarnings().note(_lag(None))
    assert not caplog.records
