"""``GET /metrics`` in Prometheus' text format (prometheus-client).

Per answer (observed where the access line is written, ``middleware.request_log``):
requests by route, model, status and upstream; latency by route and time to first token by
model (histograms); tokens by model and kind; cost in credits by model; upstream attempts and
fallbacks by model. Per error answer (``middleware.errors``): errors by type and status, which
counts the limits' rejections by kind (``rate_limit_error``, ``quota_exceeded``,
``insufficient_balance``, ``ip_blocked``…). Read at each scrape: streams in flight, each
upstream's circuit state (1 open), and the usage records waiting to be written with how long.

The route label is the route's template (``/v1/models/{model}``), never the raw path, so no
client can grow the label set. With ``PROMETHEUS_MULTIPROC_DIR`` set (several worker
processes), counters and histograms are kept in that folder by prometheus-client and a
scrape of any process sums them all; the gauges read at scrape time are that process's own.
``[server] metrics`` says who may scrape: ``admin`` (the admin token, the default),
``public``, or ``off``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from izzi_proxy.dialects.openai_chat import OPENAI_CHAT
from izzi_proxy.keys import METRICS, RECORD, ROUTER, STREAMS, USAGE_WRITER
from izzi_proxy.ledger import UsageRecord
from izzi_proxy.routes import endpoint

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 60)
MICRO = 1_000_000


class Metrics:
    """The gateway's metrics, on a registry of its own (one per app)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("izzi_requests", "Answers, by route, model, status and upstream",
                                ("route", "model", "status", "upstream"), registry=r)  # fmt: skip
        self.latency = Histogram("izzi_request_duration_seconds", "Time to the answer's end, by route", ("route",),
                                 buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.ttft = Histogram("izzi_time_to_first_token_seconds", "Time to the answer's first byte, by model",
                              ("model",), buckets=TTFT_BUCKETS, registry=r)  # fmt: skip
        self.tokens = Counter("izzi_tokens", "Tokens, by model and kind (input, output, cache_read, cache_write)",
                              ("model", "kind"), registry=r)  # fmt: skip
        self.cost = Counter("izzi_cost_credits", "Credits charged, by model", ("model",), registry=r)
        self.attempts = Counter("izzi_upstream_attempts", "Upstream calls made, by model", ("model",), registry=r)
        self.fallbacks = Counter("izzi_fallbacks", "Upstream calls after a failed one, by model", ("model",),
                                 registry=r)  # fmt: skip
        self.errors = Counter("izzi_errors", "Error answers, by type and status (the limits' rejections among them)",
                              ("type", "status"), registry=r)  # fmt: skip
        self._children: dict[tuple, Any] = {}  # labelled children, looked up once (``labels`` takes a lock)

    def _of(self, metric: Any, *labels: str) -> Any:
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def answered(self, request: web.Request, status: int, latency_s: float) -> None:
        info = request.match_info.route.resource
        route = info.canonical if info is not None else "-"
        record = request.get(RECORD)
        model = upstream = "-"
        if isinstance(record, UsageRecord):
            model, upstream = record.model or "-", record.upstream or "-"
            if record.ttft_ms is not None:
                self._of(self.ttft, model).observe(record.ttft_ms / 1000)
            if (usage := record.usage) is not None:
                counts = {"input": usage.input_tokens, "output": usage.output_tokens,
                          "cache_read": usage.cache_read_tokens, "cache_write": usage.cache_write_tokens}  # fmt: skip
                for kind, count in counts.items():
                    if count:
                        self._of(self.tokens, model, kind).inc(count)
            if record.cost:
                self._of(self.cost, model).inc(record.cost / MICRO)
            if record.attempts:
                self._of(self.attempts, model).inc(record.attempts)
                if record.attempts > 1:
                    self._of(self.fallbacks, model).inc(record.attempts - 1)
            if status < 400 and record.outcome == "error" and record.error_type:  # ended by an in-stream error
                self.failed(record.error_type, status)
        self._of(self.requests, route, model, str(status), upstream).inc()
        self._of(self.latency, route).observe(latency_s)

    def failed(self, kind: str, status: int) -> None:
        self._of(self.errors, kind, str(status)).inc()


class _Live:
    """Gauges read when scraped: streams in flight, circuits, the usage writer's backlog."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        streams = GaugeMetricFamily("izzi_streams_in_flight", "Streams being relayed by this process")
        streams.add_metric([], len(self._app.get(STREAMS, ())))
        yield streams
        circuits = GaugeMetricFamily("izzi_upstream_circuit_open", "1 while an upstream's breaker is open",
                                     labels=["upstream"])  # fmt: skip
        router = self._app.get(ROUTER)
        for name, health in router.health.items() if router is not None else ():
            circuits.add_metric([name], 1.0 if health.breaker.state == "open" else 0.0)
        yield circuits
        writer = self._app.get(USAGE_WRITER)
        waiting = GaugeMetricFamily("izzi_usage_records_waiting", "Usage records not yet written to the ledger")
        lag = GaugeMetricFamily("izzi_usage_write_lag_seconds", "How long usage records have waited to be written")
        waiting.add_metric([], writer.waiting if writer is not None else 0)
        lag.add_metric([], writer.lag_s if writer is not None else 0.0)
        yield waiting
        yield lag


def scrape(app: web.Application) -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = app[METRICS].registry
    live = CollectorRegistry()
    live.register(_Live(app))
    return generate_latest(registry) + generate_latest(live)


async def _serve(request: web.Request) -> web.Response:
    response = web.Response(body=scrape(request.app))
    response.content_type, response.charset = CONTENT_TYPE_LATEST.split(";")[0], "utf-8"
    return response


serve_admin = endpoint(OPENAI_CHAT, admin=True)(_serve)


@endpoint(OPENAI_CHAT, public=True)
async def serve_public(request: web.Request) -> web.Response:
    return await _serve(request)
