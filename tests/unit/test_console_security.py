"""The console's access rules, against a real ``syncengine ui`` process (no database needed:
the pipeline's source is unreachable and its target a Parquet folder).

A non-loopback bind without a token is refused (exit 2, before anything listens); a POST
without the CSRF token, from another origin or with a foreign Host header is refused; with a
token configured nothing but the sign-in page answers until the token is given.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port

EXE = str(Path(sys.executable).parent / "syncengine")
TOKEN = "a-console-token-of-32-characters"
PASSWORD = "Dsn-pw-n0t-shown"


def write_config(tmp_path: Path, token: str | None = None) -> Path:
    console = f"console: {{token: '{token}'}}\n" if token else ""
    config = tmp_path / "sync.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            state: {tmp_path / "state.db"}
            pipelines:
              orders:
                source:
                  type: postgres
                  dsn: postgresql://app:{PASSWORD}@127.0.0.1:1/shop
                  tables: [public.orders]
                target: {{type: parquet, path: {tmp_path / "lake"}}}
            """
        )
        + console
    )
    return config


class Browser:
    """urllib with cookies and no automatic redirects: what a browser sends, step by step."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect()
        )

    def request(
        self, path: str, form: dict[str, str] | None = None, **headers: str
    ) -> tuple[int, str, dict[str, str]]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(self.url + path, data=data, headers=headers)
        try:
            with self.opener.open(req, timeout=60) as response:
                return response.status, response.read().decode(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), dict(exc.headers)

    def csrf(self, path: str) -> str:
        status, body, _ = self.request(path)
        assert status == 200, body
        found = re.search(r'name="csrf" value="([0-9a-f]{64})"', body)
        assert found, body
        return found.group(1)


def start(config: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(
        [EXE, "ui", str(config), "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            urllib.request.urlopen(url + "/static/console.css", timeout=10).close()
            return proc, url
        except (urllib.error.URLError, OSError):  # not listening yet, or still importing
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the console did not answer within 60 s")


@pytest.fixture
def console(tmp_path: Path) -> Iterator[str]:
    proc, url = start(write_config(tmp_path))
    yield url
    proc.terminate()
    assert proc.wait(30) == 0
    output = proc.stdout.read() if proc.stdout else ""
    assert PASSWORD not in output and "Traceback" not in output, output


@pytest.mark.parametrize("command", ["ui", "run"])
def test_non_loopback_bind_without_token_is_refused(tmp_path, command):
    config = write_config(tmp_path)
    if command == "ui":
        args = ["ui", str(config), "--host", "0.0.0.0", "--port", "0"]
    else:
        args = ["run", str(config), "--ui-host", "0.0.0.0", "--ui-port", "0"]
    result = subprocess.run([EXE, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not loopback" in result.stderr and "console.token" in result.stderr
    assert "Traceback" not in result.stderr and PASSWORD not in result.stderr


def test_short_token_is_a_config_error(tmp_path):
    config = write_config(tmp_path, token="short-token")
    result = subprocess.run([EXE, "ui", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "console.token" in result.stderr, result.stderr
    assert "short-token" not in result.stderr


def test_post_needs_the_csrf_token_and_the_same_origin(console):
    page = Browser(console)
    status, body, headers = page.request("/pipelines")
    assert status == 200 and "orders" in body and PASSWORD not in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    # the chart's JSON: typed, not sniffable, nothing of the config but the pipeline's name
    status, body, headers = page.request("/pipelines/orders/lag.json")
    assert status == 200 and json.loads(body)["pipeline"] == "orders"
    assert headers["Content-Type"].startswith("application/json")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert PASSWORD not in body and "127.0.0.1:1" not in body
    assert page.request("/pipelines/nope/lag.json")[0] == 404
    assert page.request("/pipelines/orders/lag.json?window=x")[0] == 400

    assert page.request("/verify", {"pipeline": "orders"})[0] == 403  # no token
    wrong = {"pipeline": "orders", "csrf": "0" * 64}
    assert page.request("/verify", wrong)[0] == 403
    csrf = page.csrf("/verify")
    other_session = Browser(console)
    assert other_session.request("/verify", {"pipeline": "orders", "csrf": csrf})[0] == 403
    form = {"pipeline": "orders", "csrf": csrf}
    assert page.request("/verify", form, Origin="http://evil.example")[0] == 403
    status, _, headers = page.request("/verify", form, Origin=console)
    assert status == 303 and headers["Location"] == "/verify"
    # the verify fails (the source is unreachable): shown redacted, never the password
    deadline = time.monotonic() + 60
    while "failed" not in (body := page.request("/verify")[1]):
        assert time.monotonic() < deadline, body
        time.sleep(0.5)
    assert PASSWORD not in body

    assert page.request("/pipelines", Host="evil.example")[0] == 421
    req = urllib.request.Request(console + "/pipelines", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=60)
    assert refused.value.code == 405


def test_token_is_required_when_configured(tmp_path):
    proc, url = start(write_config(tmp_path, token=TOKEN))
    try:
        page = Browser(url)
        status, _, headers = page.request("/conflicts")
        assert status == 303 and headers["Location"] == "/login"
        assert page.request("/verify", {"pipeline": "orders"})[0] == 403
        status, _, headers = page.request("/pipelines/orders/lag.json")
        assert status == 303 and headers["Location"] == "/login"
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert Browser(url).request("/pipelines", **bearer)[0] == 200
        assert Browser(url).request("/pipelines", Authorization="Bearer nope")[0] == 303

        csrf = page.csrf("/login")
        status, _, headers = page.request("/login", {"token": "wrong", "csrf": csrf})
        assert (status, headers["Location"]) == (303, "/login")
        assert "wrong token" in page.request("/login")[1]
        status, _, headers = page.request("/login", {"token": TOKEN, "csrf": csrf})
        assert (status, headers["Location"]) == (303, "/pipelines")
        status, body, _ = page.request("/pipelines")
        assert status == 200 and TOKEN not in body
    finally:
        proc.terminate()
        proc.wait(30)
