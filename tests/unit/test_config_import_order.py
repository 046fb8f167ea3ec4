"""A kind's config module imported before anything else must not break the registry.

Importing ``sources/postgres/config.py`` first loads :mod:`syncengine.config`; when that
package loaded the models eagerly, the source/target union was built while the kind's config
module was half-imported, and the kind was recorded as broken ("registered but cannot be
loaded … circular import") for the rest of the process: a test order under xdist showed it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

FIRST = [
    "syncengine.sources.postgres.config",
    "syncengine.sources.mongo.config",
    "syncengine.targets.postgres.config",
    "syncengine.targets.mongo.config",
    "syncengine.targets.parquet.config",
    "syncengine.targets.parquet.target",
    "syncengine.sources.postgres.factory",
    "syncengine.targets.parquet.factory",
]

PROBE = """
import importlib, sys
importlib.import_module(sys.argv[1])
from syncengine.config.models import PipelineConfig
for target in ({"type": "parquet", "path": "/x"}, {"type": "postgres", "dsn": "postgresql://h/t"},
               {"type": "mongo", "uri": "mongodb://h", "database": "d"}):
    PipelineConfig.model_validate({"source": {"type": "postgres", "dsn": "postgresql://h/s",
                                              "tables": ["t"]}, "target": target})
PipelineConfig.model_validate({"source": {"type": "mongo", "uri": "mongodb://h", "database": "d",
                                          "collections": ["c"]},
                               "target": {"type": "parquet", "path": "/x"}})
"""


@pytest.mark.parametrize("module", FIRST)
def test_every_kind_validates_whichever_module_is_imported_first(module: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, module], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
