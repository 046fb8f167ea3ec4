"""The operations console in a real headless browser, served by a running daemon.

One pipeline (Postgres → Postgres, ``manual`` conflicts) reads a table named
``Ta"ble; DROP TABLE victim;-- é✓``; a row edited on both sides is parked with a ``<script>``
as its incoming value and a later change held behind it. With ``syncengine run --ui-port``
the test loads every page, resolves the conflict by clicking, sees the target row take the
held change, runs verify from the page, and checks that names and values render as text,
that the DSN's password appears nowhere, and that a POST without the CSRF token is refused.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql

from tests.e2e.console_scenario import (
    BROWSER_MISSING,
    HOSTILE,
    PASSWORD,
    SCRIPT,
    TABLE,
    browser_paths,
    make_browser,
    park_conflict,
    start_daemon_with_console,
)
from tests.e2e.harness import rows, wait_for

# skipped before any server starts when the browser pieces are missing
pytestmark = pytest.mark.skipif(browser_paths() is None, reason=BROWSER_MISSING)


@pytest.fixture
def browser() -> Iterator[Any]:
    if browser_paths() is None:
        pytest.skip(BROWSER_MISSING)
    driver = make_browser()
    try:
        yield driver
    finally:
        driver.quit()


def texts(driver: Any, css: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def status_of(url: str, method: str = "GET", data: bytes | None = None, **headers: str) -> int:
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_console_pages_resolve_by_clicking(browser, tmp_path, pg_dsn, pg_target_dsn):
    from selenium.webdriver.common.by import By

    cli = park_conflict(tmp_path, pg_dsn, pg_target_dsn)
    daemon, url = start_daemon_with_console(cli)
    seen: list[str] = []

    def visit(path: str) -> None:
        browser.get(url + path)
        seen.append(browser.page_source)

    try:
        # Pipelines: the daemon's state and the open work, refreshed by the page itself
        visit("/pipelines")
        wait_for(lambda: texts(browser, "#pipeline-shop .state") == ["running"], 60, 0.5)
        cards = " ".join(texts(browser, "#pipeline-shop .cards dl"))
        assert "conflicts pending\n2" in cards and "dead letters\n0" in cards, cards
        assert browser.find_element(By.CSS_SELECTOR, "#pipeline-shop svg")

        # Tables: the hostile name is text, as the source and the target call it
        visit("/pipelines/shop/tables")
        names = texts(browser, "td.name")
        quoted = '"' + HOSTILE.replace('"', '""') + '"'
        assert names[:2] == [f"public.{quoted}", quoted], names

        # Conflicts: the queue, then one conflict side by side
        visit("/conflicts")
        listed = texts(browser, "table.grid tbody td.name")
        assert len(listed) == 2 and all("DROP TABLE victim;-- é✓" in t for t in listed), listed
        browser.find_element(By.CSS_SELECTOR, "a.conflict-link").click()
        seen.append(browser.page_source)
        assert "DROP TABLE victim;-- é✓" in browser.find_element(By.ID, "conflict-table").text

        def cells(field: str) -> list[Any]:
            row = browser.find_element(By.CSS_SELECTOR, f'tr[data-field="{field}"]')
            return row.find_elements(By.CSS_SELECTOR, "td")

        base, local, remote = cells("v")
        assert (base.text, local.text, remote.text) == ("row 1", "edited on the target", SCRIPT)
        assert "differs" in local.get_attribute("class")
        assert "differs" in remote.get_attribute("class")
        assert browser.execute_script("return window.__pwned") is None
        assert "&lt;script&gt;" in browser.page_source
        # nested documents as trees: only the field that changed is marked
        assert [c.text for c in cells("doc.size.w")] == ["1", "1", "99"]
        assert "differs" in cells("doc.size.w")[2].get_attribute("class")
        assert "differs" not in cells("doc.tag")[2].get_attribute("class")
        assert browser.find_element(By.CSS_SELECTOR, 'tr[data-field="doc.size"]')
        (held,) = texts(browser, "pre.held")
        assert "final from the source" in held

        browser.find_element(By.CSS_SELECTOR, 'input[name="take"][value="remote"]').click()
        browser.find_element(By.ID, "resolve-button").click()
        wait_for(lambda: browser.find_element(By.ID, "conflict-status").text == "resolved", 30)
        seen.append(browser.page_source)
        (flash,) = texts(browser, ".flash.ok")
        assert "took remote; released 1 held change(s)" in flash, flash

        # the chosen row, then the held change, reached the target
        query = sql.SQL("SELECT v, (doc->'size'->>'w')::int FROM {} WHERE id = 1").format(TABLE)
        assert rows(pg_target_dsn, query) == [("final from the source", 100)]
        # the other conflict, from the queue: select it, keep the target's row
        visit("/conflicts")
        (remaining,) = texts(browser, "a.conflict-link")
        browser.find_element(By.CSS_SELECTOR, 'input[name="id"]').click()
        browser.find_element(By.CSS_SELECTOR, 'button[name="take"][value="local"]').click()
        wait_for(lambda: bool(texts(browser, ".flash")), 30)
        (done,) = texts(browser, ".flash.ok")
        assert done.startswith(f"resolved conflict {remaining} ({quoted} "), done
        assert done.endswith("took local; released 0 held change(s)"), done
        assert texts(browser, "table.grid tbody td") == ["no conflicts"]
        query = sql.SQL("SELECT v FROM {} WHERE id = 2").format(TABLE)
        assert rows(pg_target_dsn, query) == [("edited on the target",)]

        visit("/deadletters")
        assert texts(browser, "table.grid tbody td") == ["no dead letters"]
        visit("/deadletters/999")
        assert "no dead letter" in browser.page_source

        # Verify, started from the page, finishes while the page refreshes itself
        visit("/verify")
        browser.find_element(By.ID, "verify-button").click()
        wait_for(lambda: "finished" in " ".join(texts(browser, "#verify-shop h2")), 120, 0.5)
        seen.append(browser.page_source)
        (result,) = texts(browser, "#verify-shop h3")
        assert "DIFFERENT" in result and "DROP TABLE victim;-- é✓" in result, result
        # the row kept local on purpose is the one difference, field by field
        diffs = texts(browser, "#verify-shop li.diff")
        assert len(diffs) == 2 and diffs[0].startswith("2.doc: source "), diffs
        assert diffs[1] == '2.v: source "changed at the source" ≠ target "edited on the target"'

        # what a script (or another site) cannot do: POST without the token, wrong Host
        assert status_of(f"{url}/conflicts/resolve", "POST", b"take=local&id=1") == 403
        assert status_of(f"{url}/verify", "POST", b"pipeline=shop") == 403
        assert status_of(f"{url}/pipelines", Host="evil.example:80") == 421
        assert status_of(f"{url}/pipelines", "DELETE") == 405
    finally:
        code = cli.stop(daemon, signal.SIGTERM)
    assert code == 0, cli.daemon_logs()
    assert "Traceback" not in cli.daemon_logs()
    assert not [page for page in seen if PASSWORD in page]
    assert rows(pg_dsn, "SELECT to_regclass('public.victim') IS NOT NULL") == [(True,)]


DEAD_LETTER_CONFIG = """
state: ${SYNCENGINE_STATE}
pipelines:
  shop:
    source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.items]}
    target: {type: postgres, dsn: "${TGT_DSN}"}
"""


def test_console_alone_replays_dead_letters_by_clicking(browser, tmp_path, pg_dsn, pg_target_dsn):
    """``syncengine ui`` (no daemon): a row the target refused is listed with its reason and
    payload, and replayed from the page through the same code as ``deadletters replay``."""
    from selenium.webdriver.common.by import By

    from tests.e2e.harness import CLI, execute
    from tests.servers import free_port

    execute(pg_dsn, "CREATE TABLE items (id int PRIMARY KEY, qty int)")
    execute(pg_target_dsn, "CREATE TABLE items (id int PRIMARY KEY, qty int CHECK (qty >= 0))")
    cli = CLI(tmp_path, DEAD_LETTER_CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    cli.run("sync", "--once")
    execute(pg_dsn, "INSERT INTO items VALUES (1, 5), (2, -1), (3, 7)")
    cli.run("sync", "--once")
    assert rows(pg_target_dsn, "SELECT id FROM items ORDER BY id") == [(1,), (3,)]

    port = free_port()
    proc = cli.start("ui", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: status_of(url + "/deadletters") == 200, 60, 0.3)
    try:
        browser.get(url + "/deadletters")
        (reason,) = texts(browser, "td.reason")
        assert "check" in reason.lower(), reason
        browser.find_element(By.LINK_TEXT, texts(browser, "table.grid tbody td a")[0]).click()
        assert '"qty": -1' in browser.find_element(By.CSS_SELECTOR, "pre.payload").text

        execute(pg_target_dsn, "ALTER TABLE items DROP CONSTRAINT items_qty_check")
        browser.get(url + "/deadletters")
        browser.find_element(By.CSS_SELECTOR, "input.select-all").click()
        browser.find_element(By.ID, "replay-button").click()
        wait_for(lambda: bool(texts(browser, ".flash.ok")), 60)
        (flash,) = texts(browser, ".flash.ok")
        assert "1 replayed, 0 dead-lettered again" in flash, flash
        assert rows(pg_target_dsn, "SELECT qty FROM items WHERE id = 2") == [(-1,)]
        assert texts(browser, "table.grid tbody td") == ["no dead letters"]
    finally:
        assert cli.stop(proc) == 0, cli.daemon_logs()
    assert "Traceback" not in cli.daemon_logs()


HISTORY_CONFIG = """
state: ${SYNCENGINE_STATE}
console: {history_interval: 1s}
pipelines:
  shop:
    source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.items]}
    target: {type: postgres, dsn: "${TGT_DSN}"}
    batch: {max_rows: 100, max_wait: 100ms}
"""


def lag_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/pipelines/shop/lag.json?tables=1", timeout=60) as response:
        return dict(json.loads(response.read()))


def test_console_started_later_charts_the_daemons_past_hour(
    browser, tmp_path, pg_dsn, pg_target_dsn
):
    """``syncengine run`` records lag samples while writers insert; a ``syncengine ui``
    started afterwards serves them (the chart's JSON and the chart in the page reach back
    before the console existed) and the chart keeps refreshing from the daemon's new ones."""
    from syncengine.state import SQLiteStateStore
    from tests.e2e.harness import CLI, execute
    from tests.servers import free_port

    execute(pg_dsn, "CREATE TABLE items (id int PRIMARY KEY, qty int)")
    cli = CLI(tmp_path, HISTORY_CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    daemon = cli.start("run")
    ui = None
    store = SQLiteStateStore(tmp_path / "state.db")
    try:
        # the first sample says it streams (the backfill's rows are not in the history)
        wait_for(lambda: bool(store.lag_samples("shop", 0.0)), 120, 0.3)
        written = 0

        def write_and_count() -> bool:
            nonlocal written
            execute(
                pg_dsn,
                f"INSERT INTO items SELECT g, 1 FROM generate_series({written + 1}, "
                f"{written + 25}) g",
            )
            written += 25
            busy = [s for s in store.lag_samples("shop", 0.0) if s.applied]
            return len(busy) >= 3

        wait_for(write_and_count, 120, 0.5)
        assert daemon.poll() is None, cli.daemon_logs()
        before = store.lag_samples("shop", 0.0)
        assert any(s.lag_bytes is not None for s in before), before  # a Postgres slot's bytes
        assert store.lag_samples("shop", 0.0, "public.items"), "no per-table samples"

        started = time.time()
        port = free_port()
        ui = cli.start("ui", "--port", str(port))
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: status_of(url + "/pipelines") == 200, 60, 0.3)

        # every change the daemon applied is in the history, per pipeline and per table
        def all_counted() -> bool:
            doc = lag_json(url)
            table = doc["tables"].get("public.items", [])
            return (
                sum(s["applied"] or 0 for s in doc["samples"]) == written
                and sum(s["applied"] for s in table) == written
            )

        wait_for(all_counted, 60, 0.5)
        doc = lag_json(url)
        earlier = [s for s in doc["samples"] if s["at"] < started]
        assert len(earlier) >= len(before) - 1, (earlier, before)  # (before may span > window)
        assert doc["charts"]["seconds"]["oldest"] < started
        assert rows(pg_target_dsn, "SELECT count(*) FROM items") == [(written,)]
        (status,) = json.loads(cli.run("status", "--json").stdout)
        assert status["lag_last_hour"]["samples"] >= len(before), status

        # the chart in the page: drawn from that JSON, with points from before the console
        browser.get(url + "/pipelines")
        figure = "#chart-shop-seconds"

        def drawn() -> tuple[int, float, str]:
            from selenium.webdriver.common.by import By

            element = browser.find_element(By.CSS_SELECTOR, figure)
            count = int(element.get_attribute("data-count") or 0)
            oldest = float(element.get_attribute("data-oldest") or "inf")
            points = element.find_element(By.CSS_SELECTOR, "polyline").get_attribute("points")
            return count, oldest, points or ""

        wait_for(lambda: drawn()[0] >= len(earlier), 30, 0.3)
        count, oldest, points = drawn()
        assert oldest < started and len(points.split()) == count, (count, oldest, points)
        caption = texts(browser, f"{figure} figcaption")[0]
        assert caption.startswith("lag in seconds: peak") and f"{count} sample(s)" in caption
        # it refreshes by itself: the daemon's later samples join the chart
        wait_for(lambda: drawn()[0] > count, 30, 0.5)
    finally:
        if ui is not None:
            assert cli.stop(ui) == 0, cli.daemon_logs()
        assert cli.stop(daemon) == 0, cli.daemon_logs()
    assert "Traceback" not in cli.daemon_logs()
