"""The decode process imports only what decoding needs: its start-up is on the path of every
one-shot drain (``sync`` starts it early, but it must still be ready before the first change
streams), and the config models (pydantic) alone were ≈ 0.17 s of it. A fresh interpreter:
this test process has imported everything already."""

from __future__ import annotations

import json
import subprocess
import sys

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
