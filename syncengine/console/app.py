"""The console's pages and actions (aiohttp handlers, Jinja2 templates with autoescape).

Reads come from the state store and the probe (:mod:`.overview`); every action calls the
code the CLI calls: :func:`~syncengine.conflicts.manual.resolve_in_config` (``conflicts
resolve``), :func:`~syncengine.runtime.replay.replay_letters` (``deadletters replay``) and
:func:`~syncengine.runtime.verify.verify_named` (``verify``). Errors an action raises are
shown as a message on the page, redacted; never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import jinja2
from aiohttp import web

from syncengine.config.secrets import redact
from syncengine.console import conflictview
from syncengine.console.history import Chart, History
from syncengine.console.overview import Probe, lag_document, pipeline_view, table_views
from syncengine.console.security import Guard, see_other
from syncengine.errors import SyncEngineError

if TYPE_CHECKING:
    from syncengine.config.models import Config
    from syncengine.conflicts.manual import Choice
    from syncengine.runtime.compare import TableDiff
    from syncengine.state import Conflict, StateStore

log = logging.getLogger("syncengine.console")

AGES = {"": 0.0, "5m": 300.0, "1h": 3600.0, "1d": 86400.0}
CHOICES = ("local", "remote", "merged")


class Console:
    """State shared by the handlers: config, store, probe, sampled history, flash messages and
    the last verify report per pipeline."""

    def __init__(
        self, config: Config, state: StateStore, probe: Probe, history: History, guard: Guard
    ) -> None:
        self.config = config
        self.state = state
        self.probe = probe
        self.history = history
        self.guard = guard
        self.flashes: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self.verify: dict[str, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("syncengine.console", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["number"] = _number
        self.templates.filters["bytes"] = _bytes
        self.templates.filters["duration"] = _duration
        self.templates.filters["json"] = _json

    def page(self, request: web.Request, template: str, **values: Any) -> web.Response:
        flashes = self.flashes.pop(request["session"], [])
        html = self.templates.get_template(template).render(
            csrf=request["csrf"],
            flashes=flashes,
            partial=request.headers.get("X-Partial") == "1",
            path=request.path,
            pipelines=list(self.config.pipelines),
            **values,
        )
        return web.Response(text=html, content_type="text/html")

    def flash(self, request: web.Request, kind: str, text: str) -> None:
        self.flashes[request["session"]].append((kind, redact(text)))

    # pages -----------------------------------------------------------------------------

    async def pipelines(self, request: web.Request) -> web.Response:
        fresh = 3 * self.config.console.history_interval  # a daemon is recording
        views = [
            pipeline_view(self.probe, self.history, self.state, name, spec, fresh)
            for name, spec in self.config.pipelines.items()
        ]
        interval = self.config.console.history_interval
        return self.page(request, "pipelines.html", views=views, interval=interval, refresh=5)

    async def lag(self, request: web.Request) -> web.Response:
        """The lag chart's data as JSON (names and values are JSON-escaped, nothing of the
        config but the pipeline's name); ``?window=`` seconds, an hour by default;
        ``?tables=1`` adds the per-table samples."""
        name = self._pipeline(request.match_info["name"])
        keep = self.config.console.history_keep
        window = min(max(float(_int(request.query.get("window", "3600"))), 60.0), keep)
        tables = request.query.get("tables") == "1"
        document = lag_document(self.state, self.history, name, window, _caption, tables=tables)
        return web.json_response(document, dumps=_json)

    async def tables(self, request: web.Request) -> web.Response:
        name = self._pipeline(request.match_info["name"])
        spec = self.config.pipelines[name]
        return self.page(
            request,
            "tables.html",
            name=name,
            tables=table_views(self.probe, self.history, self.state, name, spec),
            checkpoints=self.state.list_checkpoints(name),
            refresh=5,
        )

    async def conflicts(self, request: web.Request) -> web.Response:
        pipeline = request.query.get("pipeline", "")
        table = request.query.get("table", "")
        age = request.query.get("age", "")
        status = "pending" if request.query.get("status", "pending") == "pending" else None
        found = [
            c
            for name in ([pipeline] if pipeline in self.config.pipelines else self.config.pipelines)
            for c in self.state.list_conflicts(name, status=status)
        ]
        tables = sorted({c.table for c in found})
        oldest = time.time() - AGES.get(age, 0.0)
        found = [
            c
            for c in found
            if (not table or c.table == table) and (not AGES.get(age) or _age(c) <= oldest)
        ]
        return self.page(
            request,
            "conflicts.html",
            conflicts=found,
            held={c.id: len(self.state.held_changes(c.id)) for c in found if c.id is not None},
            tables=tables,
            chosen={"pipeline": pipeline, "table": table, "age": age, "status": status or "all"},
            ages=list(AGES),
        )

    async def conflict(self, request: web.Request) -> web.Response:
        from syncengine.conflicts.manual import auto_merge
        from syncengine.conflicts.rows import loads

        conflict = self._conflict(request)
        assert conflict.id is not None
        proposal: str | None = None
        try:
            spec = self.config.pipelines.get(conflict.pipeline)
            tie = spec.conflicts.tie if spec else "remote"
            proposal = auto_merge(conflict, tie)
        except Exception as exc:  # noqa: BLE001 - the page still shows the conflict
            self.flash(request, "error", f"no merge proposal: {exc}")
        held = self.state.held_changes(conflict.id)
        return self.page(
            request,
            "conflict.html",
            c=conflict,
            rows=conflictview.field_rows(
                loads(conflict.base), loads(conflict.local), loads(conflict.remote)
            ),
            held=[conflictview.pretty(h) for h in held],
            proposal=conflictview.pretty(proposal) if proposal is not None else None,
            key=conflictview.pretty(conflict.key),
        )

    async def deadletters(self, request: web.Request) -> web.Response:
        pipeline = request.query.get("pipeline", "")
        everything = request.query.get("all") == "1"
        names = [pipeline] if pipeline in self.config.pipelines else list(self.config.pipelines)
        letters = [x for n in names for x in self.state.list_dead_letters(n, everything)]
        return self.page(
            request,
            "deadletters.html",
            letters=letters,
            chosen={"pipeline": pipeline, "all": everything},
        )

    async def deadletter(self, request: web.Request) -> web.Response:
        wanted = _int(request.match_info["id"])
        for name in self.config.pipelines:
            for letter in self.state.list_dead_letters(name, include_replayed=True):
                if letter.id == wanted:
                    return self.page(
                        request,
                        "deadletter.html",
                        letter=letter,
                        payload=conflictview.pretty(letter.payload),
                    )
        raise web.HTTPNotFound(text=f"no dead letter with id {wanted}\n")

    async def verify_page(self, request: web.Request) -> web.Response:
        running = any(r["running"] for r in self.verify.values())
        return self.page(request, "verify.html", reports=self.verify, refresh=2 if running else 0)

    async def login(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            form = await request.post()
            token = form.get("token")
            if isinstance(token, str) and self.guard.token_matches(token):
                response = see_other("/pipelines")
                self.guard.sign_in(request, response)
                return response
            self.flash(request, "error", "wrong token")
            return see_other("/login")
        return self.page(request, "login.html")

    # actions ---------------------------------------------------------------------------

    async def resolve_one(self, request: web.Request) -> web.Response:
        conflict = self._conflict(request)
        form = await request.post()
        take = str(form.get("take", ""))
        edited = str(form.get("edited", "")) if take == "edited" else None
        choice = "merged" if take == "edited" else take
        if choice not in CHOICES:
            self.flash(request, "error", f"unknown choice {take!r}")
        else:
            await self._resolve(request, conflict, cast("Choice", choice), edited)
        return see_other(f"/conflicts/{conflict.id}")

    async def resolve_many(self, request: web.Request) -> web.Response:
        form = await request.post()
        take = str(form.get("take", ""))
        ids = [_int(str(v)) for v in form.getall("id", [])]
        if take not in CHOICES:
            self.flash(request, "error", f"unknown choice {take!r}")
        elif not ids:
            self.flash(request, "error", "select at least one conflict")
        for conflict_id in ids if take in CHOICES else []:
            conflict = self.state.get_conflict(conflict_id)
            if conflict is None:
                self.flash(request, "error", f"no conflict with id {conflict_id}")
                continue
            await self._resolve(request, conflict, cast("Choice", take), None)
        return see_other("/conflicts")

    async def _resolve(
        self, request: web.Request, conflict: Conflict, take: Choice, edited: str | None
    ) -> None:
        from syncengine.conflicts.manual import resolve_in_config

        spec = self.config.pipelines.get(conflict.pipeline)
        if spec is None:
            self.flash(request, "error", f"conflict {conflict.id}: pipeline "
                       f"'{conflict.pipeline}' is not in this config")  # fmt: skip
            return
        try:
            done = await resolve_in_config(
                self.config.pipelines, self.state, conflict, take, "console", edited
            )
        except SyncEngineError as exc:
            self.flash(request, "error", f"conflict {conflict.id}: {exc}")
            return
        taken = "edited row" if edited is not None else take
        self.flash(
            request,
            "ok",
            f"resolved conflict {done.conflict_id} ({conflict.table} {conflict.key}): took "
            f"{taken}; released {done.released} held change(s)",
        )

    async def replay(self, request: web.Request) -> web.Response:
        from syncengine.runtime.replay import replay_letters

        form = await request.post()
        ids = {_int(str(v)) for v in form.getall("id", [])}
        by_pipeline: dict[str, set[int]] = defaultdict(set)
        for name in self.config.pipelines:
            for letter in self.state.list_dead_letters(name):
                if letter.id in ids:
                    by_pipeline[name].add(letter.id)
        if not by_pipeline:
            self.flash(request, "error", "select at least one dead letter that is not replayed")
        for name, chosen in by_pipeline.items():
            spec = self.config.pipelines[name]
            try:
                done, again = await replay_letters(name, spec, self.state, chosen)
            except SyncEngineError as exc:
                self.flash(request, "error", f"{name}: {exc}")
                continue
            self.flash(request, "ok", f"{name}: {done} replayed, {again} dead-lettered again")
        return see_other("/deadletters")

    async def verify_start(self, request: web.Request) -> web.Response:
        form = await request.post()
        name = self._pipeline(str(form.get("pipeline", "")))
        if self.verify.get(name, {}).get("running"):
            self.flash(request, "error", f"{name}: verify is already running")
        else:
            self.verify[name] = {"running": True, "started": _now(), "diffs": [], "error": None}
            task = asyncio.create_task(self._verify(name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return see_other("/verify")

    async def _verify(self, name: str) -> None:
        from syncengine.runtime.verify import verify_named

        report = self.verify[name]
        try:
            diffs: list[TableDiff] = await verify_named(
                name, self.config.pipelines[name], self.state
            )
            report["diffs"] = [d.as_dict() for d in diffs]
        except Exception as exc:  # noqa: BLE001 - shown on the page, redacted
            report["error"] = redact(f"{type(exc).__name__}: {exc}")
        finally:
            report["running"] = False
            report["finished"] = _now()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # helpers ---------------------------------------------------------------------------

    def _pipeline(self, name: str) -> str:
        if name not in self.config.pipelines:
            raise web.HTTPNotFound(text="no such pipeline\n")
        return name

    def _conflict(self, request: web.Request) -> Conflict:
        conflict = self.state.get_conflict(_int(request.match_info["id"]))
        if conflict is None:
            raise web.HTTPNotFound(text="no such conflict\n")
        return conflict


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise web.HTTPBadRequest(text="not a number\n") from None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _age(conflict: Conflict) -> float:
    """When the conflict was parked, as a Unix time (now, if unknown)."""
    try:
        return datetime.fromisoformat(conflict.created_at or "").timestamp()
    except ValueError:
        return time.time()


def _json(value: Any) -> str:
    """A value as JSON text (the template escapes it)."""
    return json.dumps(value, ensure_ascii=False, default=str)


def _caption(label: str, chart: Chart) -> str:
    peak = _duration(chart.peak) if label == "seconds" else _bytes(chart.peak)
    return (
        f"lag in {label}: peak {peak} · {chart.count} sample(s) over the last "
        f"{_duration(chart.span)}"
    )


def _number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def _bytes(value: float | None) -> str:
    if value is None:
        return "–"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} TiB"


def _duration(value: float | None) -> str:
    if value is None:
        return "–"
    seconds = int(value)
    if seconds < 120:
        return f"{value:.1f} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def build_app(console: Console) -> web.Application:
    from importlib.resources import files

    app = web.Application(middlewares=[console.guard.middleware], client_max_size=4 * 1024**2)
    app.router.add_get("/", lambda request: _redirect("/pipelines"))
    app.router.add_get("/pipelines", console.pipelines)
    app.router.add_get("/pipelines/{name}/tables", console.tables)
    app.router.add_get("/pipelines/{name}/lag.json", console.lag)
    app.router.add_get("/conflicts", console.conflicts)
    app.router.add_post("/conflicts/resolve", console.resolve_many)
    app.router.add_get("/conflicts/{id}", console.conflict)
    app.router.add_post("/conflicts/{id}/resolve", console.resolve_one)
    app.router.add_get("/deadletters", console.deadletters)
    app.router.add_post("/deadletters/replay", console.replay)
    app.router.add_get("/deadletters/{id}", console.deadletter)
    app.router.add_get("/verify", console.verify_page)
    app.router.add_post("/verify", console.verify_start)
    app.router.add_route("GET", "/login", console.login)
    app.router.add_route("POST", "/login", console.login)
    app.router.add_static("/static/", str(files("syncengine.console") / "static"))
    return app


async def _redirect(location: str) -> web.Response:
    return see_other(location)
