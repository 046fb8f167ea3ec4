"""A loopback TCP proxy the test controls: the network faults between syncengine and a server.

syncengine connects to the proxy's port instead of the server's. The test then

* ``drop()``: closes every open connection at once (a reset: both ends see it);
* ``set_delay(s)``: delays every forwarded chunk by ``s`` seconds (a slow, congested link);
* ``half_open()``: the connections open now stay open but nothing is forwarded on them any
  more, in either direction (a peer vanished without a FIN/RST: a NAT or firewall dropped the
  flow). Only timeouts at the application level can detect this; TCP keepalives to the proxy
  still succeed. New connections are forwarded normally;
* ``refuse(True)``: new connections are closed right after accept (the server is unreachable).

Threads, not asyncio: the proxy must keep running while the test thread blocks in ``wait_for``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from psycopg.conninfo import conninfo_to_dict, make_conninfo


@dataclass(eq=False)
class _Link:
    client: socket.socket
    server: socket.socket
    #: set by half_open(): stop forwarding, keep both sockets open
    frozen: threading.Event = field(default_factory=threading.Event)
    closed: bool = False

    def close(self) -> None:
        self.closed = True
        for s in (self.client, self.server):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


class TcpProxy:
    """``TcpProxy(server_port).start()``; connect to ``proxy.port``; ``close()`` at the end."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._links: list[_Link] = []
        self._frozen: list[_Link] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._refusing = False
        self.delay = 0.0
        #: connections accepted, for assertions that a client reconnected
        self.accepted = 0

    def start(self) -> TcpProxy:
        threading.Thread(target=self._accept_loop, daemon=True, name="proxy-accept").start()
        return self

    # -- faults ---------------------------------------------------------------------------

    def drop(self) -> int:
        """Close every open connection; returns how many were open."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()
        return len(links)

    def set_delay(self, seconds: float) -> None:
        self.delay = seconds

    def half_open(self) -> int:
        """Freeze every open connection (no forwarding, no close); returns how many."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.frozen.set()
        with self._lock:
            self._frozen.extend(links)
        return len(links)

    def refuse(self, on: bool) -> None:
        self._refusing = on

    def open_connections(self) -> int:
        with self._lock:
            return sum(not link.closed for link in self._links)

    def close(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.drop()
        for link in self._frozen:
            link.close()

    # -- forwarding -----------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._refusing:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(client, server)
            with self._lock:
                self._links.append(link)
                self.accepted += 1
            for src, dst in ((client, server), (server, client)):
                threading.Thread(
                    target=self._pump, args=(link, src, dst), daemon=True, name="proxy-pump"
                ).start()

    def _pump(self, link: _Link, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not link.closed:
                data = src.recv(65536)
                if not data:
                    break
                if link.frozen.is_set():
                    continue  # half-open: swallow, never answer, never close
                if self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        if not link.frozen.is_set():
            link.close()
            with self._lock:
                if link in self._links:
                    self._links.remove(link)


@contextlib.contextmanager
def proxied(dsn: str) -> Iterator[tuple[str, TcpProxy]]:
    """(``dsn`` through a fresh proxy, the proxy); the proxy is closed afterwards."""
    params = conninfo_to_dict(dsn)
    proxy = TcpProxy(int(params.get("port") or 5432), params.get("host") or "127.0.0.1")
    proxy.start()
    try:
        yield make_conninfo(**{**params, "host": "127.0.0.1", "port": str(proxy.port)}), proxy
    finally:
        proxy.close()
