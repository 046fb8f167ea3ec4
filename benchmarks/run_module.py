"""``python -m benchmarks.run_module NAME [--quick]``: one contributed module in its own process.

Contributed benchmarks (``benchmarks/<name>.py`` with ``run(quick: bool) -> dict``) run
in-process engine code; running each in a child process isolates crashes and makes the child's
peak RSS the engine's. The result dict is printed as the last stdout line, after ``RESULT``.
"""

from __future__ import annotations

import importlib
import json
import sys

MARKER = "RESULT "


def main(argv: list[str]) -> int:
    name, quick = argv[0], "--quick" in argv[1:]
    module = importlib.import_module(f"benchmarks.{name}")
    result = module.run(quick)
    if not isinstance(result, dict):
        raise TypeError(f"benchmarks.{name}.run() returned {type(result).__name__}, not a dict")
    sys.stdout.flush()
    print(MARKER + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
