from __future__ import annotations

import pytest


@pytest.fixture(params=["postgres", "mongo"])
def target_where(request: pytest.FixtureRequest) -> tuple[str, dict[str, str]]:
    """A fresh target database of each kind (the fixtures start the servers)."""
    if request.param == "postgres":
        return "postgres", {"dsn": request.getfixturevalue("pg_target_dsn")}
    uri = request.getfixturevalue("mongo_uri")
    return "mongo", {"uri": uri, "database": request.getfixturevalue("mongo_db")}
