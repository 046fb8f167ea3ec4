"""The decode process imports only what decoding needs: its start-up is on the path of every
one-shot drain (``sync`` starts it early, but it must still be ready before the first change
streams), and the config models (pydantic) alone were ≈ 0.17 s of it. A fresh interpreter:
this test process has imported everything already."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from syncengine.sources.postgres import decodespawn

PROBE = (
    "import json, sys\n"
    "import syncengine.sources.postgres.decodechild\n"
    "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
    "('pydantic', 'polars', 'sqlglot') or m == 'syncengine.config.models')))\n"
)


def test_the_decode_process_does_not_import_the_config_models_or_polars() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout) == []


EARLY = (
    "import importlib\n"
    "from syncengine.runtime.warmup import FIRST_GROUP_IMPORTS\n"
    "from syncengine.sources.postgres import decodespawn\n"
    "decodespawn.start_early()\n"
    "early = decodespawn.SPARES.spare\n"
    "for module in FIRST_GROUP_IMPORTS:\n"
    "    importlib.import_module(module)\n"
    "taken = decodespawn.SPARES.take()\n"
    "print(taken is early)\n"
    "taken.discard()\n"
)


def test_the_child_started_early_survives_the_first_groups_imports() -> None:
    """``sync`` starts its child, then imports Polars for its first group (which sets an
    allocator variable in ``os.environ``); the stream must still take that child, not kill
    it and start another (which costs a drain the child's whole start-up)."""
    env = {**os.environ, "SYNCENGINE_PG_DECODE": "process"}
    env.pop("_RJEM_MALLOC_CONF", None)  # as a fresh shell has it
    done = subprocess.run(
        [sys.executable, "-c", EARLY],
        capture_output=True, text=True, check=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.stdout.split() == ["True"]


def test_the_child_runs_this_process_s_code_whatever_the_working_directory(
    tmp_path, monkeypatch
) -> None:
    """``python -m`` puts the working directory first on ``sys.path``: started from a folder
    holding another ``syncengine`` (a source checkout of another version, a benchmark tree),
    the child imported that one instead of its parent's. Here that one cannot be imported: the
    child must not see it, read the end of its socket and exit as told (2: no parameters)."""
    poisoned = tmp_path / "syncengine"
    poisoned.mkdir()
    (poisoned / "__init__.py").write_text("raise ImportError('the wrong syncengine')\n")
    monkeypatch.chdir(tmp_path)
    started = decodespawn._start()
    started.sock.close()  # no parameters will come
    assert started.proc.wait(timeout=120) == 2
