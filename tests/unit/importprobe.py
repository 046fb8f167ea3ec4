"""What a fresh interpreter imports to load a config and build its pipelines' stages (with the
CLI's command table): how the tests prove an optional extra stays optional."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path


def modules_loaded(
    tmp_path: Path, config: str, prefixes: tuple[str, ...], env: Mapping[str, str]
) -> list[str]:
    """The loaded modules whose names start with one of ``prefixes`` (``"nats"`` matches
    ``nats`` and ``nats.*``, not ``natsort``)."""
    path = tmp_path / "probe.yaml"
    path.write_text(config)
    probe = textwrap.dedent(
        f"""
        import json, sys
        from syncengine.cli.commands import cli
        from syncengine.config import load_config
        from syncengine.runtime.pipeline import Pipeline
        from syncengine.state import SQLiteStateStore
        config = load_config({str(path)!r})
        state = SQLiteStateStore({str(tmp_path / "probe.db")!r})
        for name, spec in config.pipelines.items():
            Pipeline(name, spec, state)
        print(json.dumps(sorted(sys.modules)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    return [m for m in loaded if any(m == p or m.startswith(p + ".") for p in prefixes)]
