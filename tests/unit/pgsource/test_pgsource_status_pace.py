"""Status updates paced by the walsender's ``wal_sender_timeout`` (admin.sender_timeout,
ReplicationStream.pace): a database may set it far below the server's 60 s default."""

from __future__ import annotations

import pytest

from syncengine.sources.postgres.admin import setting_seconds
from syncengine.sources.postgres.replication import ReplicationStream


@pytest.mark.parametrize(
    ("shown", "seconds"),
    [("1min", 60.0), ("1s", 1.0), ("500ms", 0.5), ("0", 0.0), ("2h", 7200.0), ("750", 0.75)],
)
def test_show_output_in_seconds(shown, seconds):
    assert setting_seconds(shown) == pytest.approx(seconds)


class _Conn:
    pgconn = None


@pytest.mark.parametrize(
    ("timeout", "interval"), [(60.0, 10.0), (20.0, 5.0), (1.0, 0.25), (0.0, 10.0), (0.1, 0.05)]
)
def test_a_quarter_of_the_timeout_never_more_than_asked(timeout, interval):
    stream = ReplicationStream(_Conn(), 0)  # type: ignore[arg-type]
    silence = stream.silence_limit
    stream.pace(timeout)
    assert stream.status_interval == pytest.approx(interval)
    assert stream.silence_limit == silence  # a probe's deadline is not the walsender's
