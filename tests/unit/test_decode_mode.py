"""Where pgoutput is decoded: a second process by default where there is a second core."""

from __future__ import annotations

import pytest

from syncengine.sources.postgres import decodespawn
from syncengine.sources.postgres.decodespawn import ENV, in_process


@pytest.mark.parametrize(("value", "cores", "inline"), [
    (None, 2, False),
    (None, 1, True),
    ("auto", 4, False),
    ("AUTO ", 1, True),
    ("inline", 4, True),
    ("process", 1, False),
    ("Process", 2, False),
])  # fmt: skip
def test_decode_mode(monkeypatch, value, cores, inline):
    if value is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, value)
    monkeypatch.setattr(decodespawn, "_cores", lambda: cores)
    assert in_process() is inline
