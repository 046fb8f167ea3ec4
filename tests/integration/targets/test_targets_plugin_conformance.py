"""The target conformance suite, run against a target kind from another package: the
``sqlitefile`` test plugin (tests/plugins/sqlitefile). A plugin's target owes the engine the
same guarantees as a built-in one (replay-safe, checkpoint with the data, deletes, unsent
columns, schema growth). Its state is read straight from the SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from syncengine.targets.base import TableSpec
from tests.integration.targets.conftest import Harness, _plain
from tests.integration.targets.test_targets_conformance import *  # noqa: F403 - the suite
from tests.plugins.install import import_package

import_package("sqlitefile", "syncengine_sqlitefile")
from syncengine_sqlitefile.config import SQLiteFileTargetConfig  # noqa: E402
from syncengine_sqlitefile.target import SQLiteFileTarget  # noqa: E402


def _file_state(path: Path) -> Any:
    """The rows stored for a table, decoded from the file with Arrow alone."""

    def read(spec: TableSpec) -> dict[tuple[Any, ...], dict[str, Any]]:
        if not path.exists():
            return {}
        with sqlite3.connect(path) as db:
            blobs = db.execute("SELECT row FROM rows WHERE tbl = ?", (spec.name,)).fetchall()
        rows = [r for (b,) in blobs for r in pa.ipc.open_stream(b).read_all().to_pylist()]
        return {tuple(r[k] for k in spec.key): {n: _plain(v) for n, v in r.items()} for r in rows}

    return read


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    config = SQLiteFileTargetConfig(type="sqlitefile", path=str(tmp_path / "target.db"))
    yield Harness(
        "sqlitefile", lambda: SQLiteFileTarget("conf", config), _file_state(tmp_path / "target.db")
    )
