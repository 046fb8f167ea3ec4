"""The commands that need no data path start without Polars, Arrow or the database drivers.

Every cron ``sync --once`` and every ``--help`` used to pay seconds of imports before doing
anything; heavy modules are now imported inside the commands that use them. Each case runs in
a fresh interpreter, since this test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("polars", "pyarrow", "psycopg", "pymongo", "sqlglot")

# Runs the real entry point (signal handlers first), then reports what it loaded.
PROBE = textwrap.dedent(
    """
    import json, sys
    from syncengine.cli.main import main
    args, heavy = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    sys.argv, code = ["syncengine", *args], None
    try:
        main()
    except SystemExit as exit:
        code = exit.code
    print(json.dumps({"code": code, "loaded": [m for m in heavy if m in sys.modules]}))
    """
)

CONFIG = textwrap.dedent(
    """
    state: {state}
    pipelines:
      orders:
        source:
          type: postgres
          dsn: postgresql://app@127.0.0.1:1/shop
          tables: [public.orders]
        target:
          type: parquet
          path: {path}
    """
)


def _probe(args: list[str]) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["conflicts", "--help"],
        ["checkpoints", "--help"],
        ["deadletters", "--help"],
        ["sync", "--help"],
    ],
)
def test_help_loads_no_heavy_module(args):
    assert _probe(args) == {"code": 0, "loaded": []}


def test_validate_without_mappings_loads_no_heavy_module(tmp_path):
    config = tmp_path / "sync.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state.db", path=tmp_path / "out"))
    assert _probe(["validate", "--no-connect", str(config)]) == {"code": 0, "loaded": []}
