"""A pipeline with a parked conflict behind a hostile table name, and a headless browser.

Shared by the console's browser tests (``test_e2e_console.py``) and ``scripts/screenshots``,
so the committed pictures show what the tests check. The browser is Debian's ``chromium``
driven through its ``chromedriver`` (apt packages; ./scripts/setup installs them); nothing is
downloaded at run time (Selenium Manager is kept offline and never asked for a driver).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from psycopg import sql

from tests.e2e.harness import CLI, execute, wait_for
from tests.servers import free_port

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

HOSTILE = 'Ta"ble; DROP TABLE victim;-- é✓'
SCRIPT = "<script>window.__pwned = 1</script>"
PASSWORD = "Sup3r-s3cret-pw"
TABLE = sql.Identifier("public", HOSTILE)

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      shop:
        source:
          type: postgres
          dsn: "${SRC_DSN}"
          tables: ['public."Ta""ble; DROP TABLE victim;-- é✓"']
        target: {type: postgres, dsn: "${TGT_DSN}"}
        conflicts: {strategy: manual}
        batch: {max_rows: 100, max_wait: 100ms}
    """
)

BROWSER_MISSING = (
    "the console's browser tests need Debian's chromium and chromium-driver "
    "(apt-get install chromium chromium-driver; ./scripts/setup installs them)"
)


def browser_paths() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
    )
    return (chromium, driver) if chromium and driver else None


def make_browser(width: int = 1280, height: int = 900) -> WebDriver:
    """Headless Chromium; the caller quits it. Raises RuntimeError(BROWSER_MISSING)."""
    paths = browser_paths()
    if paths is None:
        raise RuntimeError(BROWSER_MISSING)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = paths[0]
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in CI
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=paths[1]), options=options)


def park_conflict(tmp_path: Path, src_dsn: str, tgt_dsn: str) -> CLI:
    """Source and target in sync, then rows 1 and 2 edited on both sides: the source's
    changes are parked (row 1's value a ``<script>``) and a later source change to row 1 is
    held behind its conflict."""
    execute(
        src_dsn,
        "CREATE TABLE victim (id int PRIMARY KEY)",
        sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v text, doc jsonb)").format(TABLE),
        sql.SQL(
            "INSERT INTO {} SELECT i, 'row ' || i, jsonb_build_object('size', "
            "jsonb_build_object('w', i, 'h', 10), 'tag', 'x') FROM generate_series(1, 20) i"
        ).format(TABLE),
    )
    secret_dsn = src_dsn.replace("postgres@", f"postgres:{PASSWORD}@")
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": secret_dsn, "TGT_DSN": tgt_dsn})
    cli.run("sync", "--once")
    execute(
        tgt_dsn,
        sql.SQL("UPDATE {} SET v = 'edited on the target' WHERE id IN (1, 2)").format(TABLE),
    )
    _update(src_dsn, SCRIPT)
    _update(src_dsn, "changed at the source", key=2)
    cli.run("sync", "--once")  # parks the conflicts
    _update(src_dsn, "final from the source", w=100)
    cli.run("sync", "--once")  # holds the later change behind it
    return cli


def _update(dsn: str, value: str, w: int = 99, key: int = 1) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "UPDATE {} SET v = %s, doc = jsonb_set(doc, '{{size,w}}', to_jsonb(%s::int)) "
                "WHERE id = %s"
            ).format(TABLE),
            (value, w, key),
        )


def start_daemon_with_console(cli: CLI) -> tuple[subprocess.Popen[str], str]:
    """``syncengine run CONFIG --ui-port N``; returns the process and the console's URL once
    it answers."""
    port = free_port()
    proc = cli.start("run", "--ui-port", str(port))
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited {proc.returncode}:\n{cli.daemon_logs()}")
        try:
            with urllib.request.urlopen(f"{url}/pipelines", timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):  # not listening yet, or still importing
            return False

    wait_for(answers, 60, 0.3)
    return proc, url
