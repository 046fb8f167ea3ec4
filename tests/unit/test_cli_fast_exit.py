"""The entry point skips the interpreter's teardown once a data command is done, and only then.

Tearing down Arrow, NumPy (OpenBLAS's threads), the drivers and ~500 modules cost about 0.1 s of
a 2.3 s backfill. Each case runs the real entry point in a fresh interpreter; an ``atexit``
handler (which only an ordinary exit runs) tells which way the process ended, and the output
and exit code must be the same either way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import atexit, json, os, sys, threading
    setup = json.loads(sys.argv[1])
    if setup.get("heavy"):
        import pyarrow  # what a data command has loaded by the time it ends
    if setup.get("thread"):
        threading.Thread(target=threading.Event().wait, daemon=True).start()
    blas = lambda: os.environ.get("OPENBLAS_NUM_THREADS")
    atexit.register(lambda: print("ordinary exit, blas threads", blas(), flush=True))
    from syncengine.cli.main import main
    sys.argv = ["syncengine", *setup["args"]]
    main()
    """
)


def _run(tmp_path, env=None, **setup):
    environ = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(setup)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**environ, **(env or {})},
    )
    return result.returncode, result.stdout, result.stderr


def test_a_finished_data_command_skips_the_teardown_and_keeps_its_output(tmp_path):
    code, out, _ = _run(tmp_path, heavy=True, args=["--version"])
    assert code == 0
    assert "version" in out
    assert "ordinary exit" not in out


def test_a_failing_command_keeps_its_exit_code_and_message(tmp_path):
    config = tmp_path / "sync.yaml"
    config.write_text("pipelines: {}\nunknown_key: 1\n")
    code, out, err = _run(tmp_path, heavy=True, args=["validate", "--no-connect", str(config)])
    assert code == 2
    assert "problem" in err
    assert "ordinary exit" not in out


def test_without_heavy_modules_the_exit_is_ordinary(tmp_path):
    code, out, _ = _run(tmp_path, args=["--version"])
    assert code == 0
    assert "version" in out
    assert "ordinary exit" in out


def test_another_thread_alive_means_an_ordinary_exit(tmp_path):
    code, out, _ = _run(tmp_path, heavy=True, thread=True, args=["--version"])
    assert code == 0
    assert "ordinary exit" in out


def test_openblas_runs_one_thread_unless_the_user_says_otherwise(tmp_path):
    _, out, _ = _run(tmp_path, args=["--version"])
    assert "blas threads 1" in out
    _, out, _ = _run(tmp_path, env={"OPENBLAS_NUM_THREADS": "4"}, args=["--version"])
    assert "blas threads 4" in out
