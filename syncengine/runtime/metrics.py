"""Prometheus metrics and the ``/metrics`` + ``/healthz`` endpoint.

One registry per process (not the global default, so tests can make their own). The HTTP
server binds to 127.0.0.1 unless told otherwise: metrics name tables and pipelines.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.changes_read = Counter(
            "syncengine_changes_read",
            "Changes read from the source",
            ["pipeline", "table"],
            registry=r,
        )
        self.changes_applied = Counter(
            "syncengine_changes_applied",
            "Changes committed to the target (after compaction)",
            ["pipeline", "table", "op"],
            registry=r,
        )
        self.batch_latency = Histogram(
            "syncengine_batch_latency_seconds",
            "Time to map, resolve and apply one batch",
            ["pipeline"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.phase_seconds = Counter(
            "syncengine_phase_seconds",
            "Seconds spent per phase of the pipeline's work (read, decode, map, resolve, apply)",
            ["pipeline", "phase"],
            registry=r,
        )
        self.lag_seconds = Gauge(
            "syncengine_source_lag_seconds",
            "Commit time of the newest change not yet applied",
            ["pipeline"],
            registry=r,
        )
        self.lag_bytes = Gauge(
            "syncengine_source_lag_bytes",
            "Source bytes not yet acknowledged (Postgres WAL)",
            ["pipeline"],
            registry=r,
        )
        self.retained_wal = Gauge(
            "syncengine_slot_retained_wal_bytes",
            "WAL the replication slot keeps on the server",
            ["pipeline"],
            registry=r,
        )
        self.conflicts = Counter(
            "syncengine_conflicts",
            "Conflicts by target table, strategy and outcome",
            ["pipeline", "table", "strategy", "outcome"],
            registry=r,
        )
        self.table_lag_seconds = Gauge(
            "syncengine_table_lag_seconds",
            "Per source table: seconds from the commit of its last applied change to the apply",
            ["pipeline", "table"],
            registry=r,
        )
        self.table_paused = Gauge(
            "syncengine_table_paused",
            "1 while a source table is paused (its changes held in the state store)",
            ["pipeline", "table"],
            registry=r,
        )
        self.table_held_changes = Gauge(
            "syncengine_table_held_changes",
            "Changes a paused source table holds in the state store",
            ["pipeline", "table"],
            registry=r,
        )
        self.dead_letters = Counter(
            "syncengine_dead_letters",
            "Records sent to the dead-letter store",
            ["pipeline", "table"],
            registry=r,
        )
        self.retries = Counter(
            "syncengine_retries", "Transient failures retried", ["pipeline"], registry=r
        )
        self.circuit_state = Gauge(
            "syncengine_circuit_state",
            "Target circuit breaker: 0 closed, 1 half-open, 2 open",
            ["pipeline"],
            registry=r,
        )
        self.history_lost = Counter(
            "syncengine_history_lost",
            "Source history lost (re-snapshots)",
            ["pipeline"],
            registry=r,
        )
        self.pipeline_up = Gauge(
            "syncengine_pipeline_up",
            "1 while the pipeline runs, 0 once it stopped on an error",
            ["pipeline"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """``/metrics`` (Prometheus text format) and ``/healthz`` in a background thread."""

    def __init__(
        self,
        metrics: Metrics,
        health: Callable[[], tuple[bool, dict[str, object]]],
        port: int,
        host: str = "127.0.0.1",
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                if self.path.split("?")[0] == "/metrics":
                    body, status, kind = outer.metrics.render(), 200, CONTENT_TYPE_LATEST
                elif self.path.split("?")[0] == "/healthz":
                    ok, details = outer.health()
                    body = json.dumps({"status": "ok" if ok else "failing", **details}).encode()
                    status, kind = (200 if ok else 503), "application/json"
                else:
                    body, status, kind = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        self.metrics = metrics
        self.health = health
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
