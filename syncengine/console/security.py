"""Who may use the console, and how a page cannot be turned against its user.

* **Bind**: 127.0.0.1 by default. Any other address needs ``console.token`` (a configured
  secret); without one the console refuses to start (:func:`check_bind`, exit 2).
* **Token**: when set, every request needs it: a sign-in form sets a session cookie bound to
  it, or a script sends ``Authorization: Bearer <token>``.
* **Sessions and CSRF**: each browser gets a random session cookie (HttpOnly, SameSite=Strict);
  every state-changing request is a POST carrying ``csrf`` = HMAC(process key, session), and a
  POST from another origin is refused. Anything but GET/HEAD/POST is refused.
* **Host header**: on loopback without a token, only ``127.0.0.1``/``localhost``/``[::1]`` Host
  headers are answered, so a DNS-rebinding page cannot read the console.
* **Headers**: a Content-Security-Policy that allows only the console's own script and style
  (no inline script), no framing, no sniffing, no referrer to other sites.

Values are escaped by the templates (Jinja2 autoescape), never here.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from syncengine.errors import UsageError

SESSION_COOKIE = "syncengine_session"
AUTH_COOKIE = "syncengine_auth"
OPEN_PATHS = ("/login", "/static/")
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer makes a form POST send Origin: null
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def see_other(location: str) -> web.Response:
    """The answer to a form POST (and to a request that must sign in first)."""
    return web.Response(status=303, headers={"Location": location})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback bind without a token (before anything starts)."""
    if not is_loopback(host) and not token:
        raise UsageError(
            f"the console would listen on {host}, which is not loopback, without a token",
            hint="set console.token in the config (a secret of 16+ characters, e.g. "
            "token: ${SYNCENGINE_CONSOLE_TOKEN}) or bind 127.0.0.1",
        )


def _hostname(host: str) -> str:
    """``127.0.0.1:8080`` → ``127.0.0.1``; ``[::1]:8080`` → ``[::1]``."""
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() and not host.endswith("]") else host


class Guard:
    """The aiohttp middleware that enforces the rules of the module docstring."""

    def __init__(self, token: str | None, host: str) -> None:
        self.token = token
        self.key = secrets.token_bytes(32)
        self.hosts: set[str] | None = None
        if token is None:
            self.hosts = {"127.0.0.1", "localhost", "[::1]", host}

    def sign(self, purpose: str, session: str) -> str:
        return hmac.new(self.key, f"{purpose}:{session}".encode(), hashlib.sha256).hexdigest()

    def signed_in(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        cookie = request.cookies.get(AUTH_COOKIE, "")
        if hmac.compare_digest(cookie, self.sign("auth", request["session"])):
            return True
        return self.bearer(request)

    def bearer(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return (
            self.token is not None
            and scheme.lower() == "bearer"
            and hmac.compare_digest(value.encode(), self.token.encode())
        )

    def token_matches(self, supplied: str) -> bool:
        return self.token is not None and hmac.compare_digest(
            supplied.encode(), self.token.encode()
        )

    def sign_in(self, request: web.Request, response: web.StreamResponse) -> None:
        response.set_cookie(
            AUTH_COOKIE,
            self.sign("auth", request["session"]),
            httponly=True,
            samesite="Strict",
            path="/",
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.hosts is not None and _hostname(request.host) not in self.hosts:
            raise web.HTTPMisdirectedRequest(text="unknown Host header\n")
        session = request.cookies.get(SESSION_COOKIE, "")
        fresh = len(session) != 43 or not session.replace("-", "").replace("_", "").isalnum()
        if fresh:
            session = secrets.token_urlsafe(32)
        request["session"] = session
        request["csrf"] = self.sign("csrf", session)
        if request.method not in ("GET", "HEAD", "POST"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD", "POST"])
        if not request.path.startswith(OPEN_PATHS) and not self.signed_in(request):
            if request.method == "POST":
                raise web.HTTPForbidden(text="sign in first\n")
            response: web.StreamResponse = see_other("/login")
        else:
            if request.method == "POST" and not self.bearer(request):
                await self.check_post(request)
            response = await handler(request)
        if fresh:
            response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="Strict", path="/")
        response.headers.update(HEADERS)
        return response

    async def check_post(self, request: web.Request) -> None:
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise web.HTTPForbidden(text="cross-origin POST refused\n")
        form = await request.post()
        supplied = form.get("csrf") or request.headers.get("X-CSRF-Token") or ""
        if not isinstance(supplied, str) or not hmac.compare_digest(
            supplied.encode(), request["csrf"].encode()
        ):
            raise web.HTTPForbidden(text="missing or wrong CSRF token\n")
