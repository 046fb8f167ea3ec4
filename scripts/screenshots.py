"""Screenshots of the operations console for the README: ``docs/console-pipelines.png`` and
``docs/console-conflict.png``.

Starts a throwaway PostgreSQL cluster, builds the browser tests' scenario (a table named
``Ta"ble; DROP TABLE victim;-- é✓`` whose row 1 was edited on both sides: the source's change
parked with a ``<script>`` value, a later one held behind it), runs ``syncengine run
--ui-port``, keeps the source busy while the daemon records its lag history (the chart's
data), and photographs the pages with headless Chromium (Debian's ``chromium`` +
``chromium-driver``).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from tests.e2e.console_scenario import (  # noqa: E402
    TABLE,
    make_browser,
    park_conflict,
    start_daemon_with_console,
)
from tests.e2e.harness import wait_for  # noqa: E402
from tests.servers import running_postgres  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument(
        "--warm-up", type=float, default=60.0, help="seconds of source load before the shots"
    )
    args = parser.parse_args()
    from selenium.webdriver.common.by import By

    work = Path(tempfile.mkdtemp(prefix="syncengine-shots-"))
    with running_postgres() as pg:
        for name in ("shop", "replica"):
            with psycopg.connect(pg.dsn(), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}")
        src, tgt = pg.dsn("shop"), pg.dsn("replica")
        cli = park_conflict(work, src, tgt)
        daemon, url = start_daemon_with_console(cli)
        browser = make_browser(1280, 1000)
        try:
            # some changes while the daemon records lag samples, so the chart has a line
            deadline = time.monotonic() + args.warm_up
            with psycopg.connect(src, autocommit=True) as conn:
                step = 0
                while time.monotonic() < deadline:
                    step += 1
                    conn.execute(
                        psycopg.sql.SQL("UPDATE {} SET v = %s WHERE id BETWEEN 2 AND 20").format(
                            TABLE
                        ),
                        (f"load {step}",),
                    )
                    time.sleep(0.5)
            browser.get(url + "/pipelines")
            wait_for(lambda: bool(browser.find_elements(By.CSS_SELECTOR, "figure[data-drawn]")))
            time.sleep(1)
            args.out.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(args.out / "console-pipelines.png"))
            browser.get(url + "/conflicts")
            browser.find_element(By.CSS_SELECTOR, "a.conflict-link").click()
            time.sleep(1)
            browser.save_screenshot(str(args.out / "console-conflict.png"))
        finally:
            browser.quit()
            cli.stop(daemon, signal.SIGTERM)
    print(f"wrote {args.out / 'console-pipelines.png'} and {args.out / 'console-conflict.png'}")


if __name__ == "__main__":
    main()
