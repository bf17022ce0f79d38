"""Prometheus metrics (prometheus-client), one registry per app."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from optim import LearnResult
    from service.registry import ManagedModel


class _ProgressiveLogLoss(Collector):
    """Each model's progressive log-loss, overall and over its recent window, read from the
    model when /metrics is scraped (not on every batch: the recent window's sums are ~10,000
    rows). Read without the model's lock: a scrape during a batch may see part of it."""

    def __init__(self, models: Callable[[], Iterable[ManagedModel]]) -> None:
        self.models = models

    def collect(self) -> Iterator[GaugeMetricFamily]:
        overall = GaugeMetricFamily(
            "adaserve_progressive_log_loss", "progressive log-loss over all rows", labels=["model"]
        )
        recent = GaugeMetricFamily(
            "adaserve_recent_progressive_log_loss", "progressive log-loss, recent window",
            labels=["model"],
        )  # fmt: skip
        for managed in list(self.models()):
            metrics = managed.model.metrics
            if metrics.totals[1] > 0:
                overall.add_metric([managed.name], metrics.totals[0] / metrics.totals[1])
            window = metrics.ring[: min(metrics.rows, metrics.window)]
            weight = window[:, 1].sum()
            if weight > 0:
                recent.add_metric([managed.name], window[:, 0].sum() / weight)
        yield overall
        yield recent


class ServiceMetrics:
    def __init__(self, models: Callable[[], Iterable[ManagedModel]] = tuple) -> None:
        """``models``: the models whose progressive log-loss /metrics reports."""
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "adaserve_requests", "HTTP requests", ["route", "method", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "adaserve_request_seconds", "HTTP request latency", ["route", "method"],
            registry=self.registry,
        )  # fmt: skip
        self.rows_learned = Counter(
            "adaserve_rows_learned", "rows learned", ["model"], registry=self.registry
        )
        self.registry.register(_ProgressiveLogLoss(models))
        # The labelled request metrics by (route, method, status), looked up once: labels()
        # checks its arguments and looks the child up under a lock, a few µs on every request.
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count a request and its latency (on the event loop, as the middleware runs)."""
        children = self._request_children.get((route, method, status))
        if children is None:
            children = self._request_children[route, method, status] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
        count, latency = children
        count.inc()
        latency.observe(seconds)

    def learned(self, managed: ManagedModel, result: LearnResult) -> None:
        """Count a learned batch's rows (called by the model's writer)."""
        self.rows_learned.labels(managed.name).inc(result.rows)

    def forget(self, model: str) -> None:
        with contextlib.suppress(KeyError):  # never labelled: nothing learned yet
            self.rows_learned.remove(model)


class MetricsMiddleware:
    """Counts requests and their latency by route template and status."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.request_done(
                template, scope.get("method", ""), status, time.perf_counter() - start
            )
