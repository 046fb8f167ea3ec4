"""The packages' lazy exports: each name from its home on first use, others an AttributeError."""

from __future__ import annotations

import subprocess
import sys

import pytest

from syncengine.lazy import lazy_exports

PROBE = """
import sys
import syncengine.targets.postgres, syncengine.targets.mongo, syncengine.targets.parquet
import syncengine.config, syncengine.config.models
lazy = ("psycopg", "pymongo", "polars", "syncengine.config.loader")
heavy = [m for m in lazy if m in sys.modules]
assert not heavy, heavy
from syncengine.targets.postgres import PostgresTarget
from syncengine.targets.postgres.target import PostgresTarget as home
assert PostgresTarget is home and "psycopg" in sys.modules
"""


def test_a_listed_name_comes_from_its_home_and_another_is_an_attribute_error():
    getattr_ = lazy_exports("pkg", {"dumps": "json"})
    import json

    assert getattr_("dumps") is json.dumps
    with pytest.raises(AttributeError, match="module 'pkg' has no attribute 'loads'"):
        getattr_("loads")


def test_the_packages_import_their_exports_only_when_asked():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
