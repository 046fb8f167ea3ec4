"""Starting and stopping the console: alone (``syncengine ui``) or beside the daemon
(``syncengine run --ui-port``), in the caller's event loop.

aiohttp's ``AppRunner`` serves inside a running loop without taking over signals, so the
daemon keeps its own SIGTERM handling and the console simply stops after it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from syncengine.console.app import Console, build_app
from syncengine.console.history import History
from syncengine.console.overview import (
    DaemonProbe,
    Probe,
    StoreProbe,
    sample_forever,
    stop_task,
)
from syncengine.console.security import Guard, check_bind
from syncengine.errors import UsageError

if TYPE_CHECKING:
    from syncengine.config.models import Config
    from syncengine.runtime.daemon import Daemon
    from syncengine.state import StateStore

log = logging.getLogger("syncengine.console")


def console_token(config: Config) -> str | None:
    token = config.console.token
    return token.get_secret_value() if token is not None else None


@dataclass
class RunningConsole:
    runner: web.AppRunner
    sampler: asyncio.Task[Any]
    console: Console
    url: str

    async def stop(self) -> None:
        await stop_task(self.sampler)
        await self.console.close()
        await self.runner.cleanup()


async def start_console(
    config: Config, state: StateStore, probe: Probe, host: str, port: int
) -> RunningConsole:
    """Listen on host:port (0: any free port); raises UsageError for a bind the rules refuse
    or a port that cannot be had."""
    token = console_token(config)
    check_bind(host, token)
    history = History()
    console = Console(config, state, probe, history, Guard(token, host))
    runner = web.AppRunner(build_app(console), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise UsageError(f"the console cannot listen on {host}:{port}: {exc.strerror}") from None
    bound = runner.addresses[0][1] if runner.addresses else port
    names = list(config.pipelines)
    sampler = asyncio.create_task(sample_forever(probe, state, names, history))
    shown = f"[{host}]" if ":" in host else host
    return RunningConsole(runner, sampler, console, f"http://{shown}:{bound}/")


async def serve_alone(config: Config, host: str, port: int) -> None:
    """``syncengine ui``: serve until SIGTERM/SIGINT, reading the state store."""
    from syncengine.state import open_state

    state = open_state(config.state)
    running = await start_console(config, state, StoreProbe(config, state), host, port)
    log.info("console on %s", running.url)
    print(f"syncengine console on {running.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await running.stop()


async def run_with_daemon(
    daemon: Daemon, host: str, port: int, metrics_port: int | None, metrics_host: str
) -> int:
    """``syncengine run --ui-port``: the console reads the daemon's health and metrics."""
    running = await start_console(daemon.config, daemon.state, DaemonProbe(daemon), host, port)
    log.info("console on %s", running.url)
    try:
        return await daemon.run(metrics_port, metrics_host)
    finally:
        await running.stop()
