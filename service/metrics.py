"""Prometheus metrics (prometheus-client), one registry per app."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from optim import LearnResult
    from service.registry import ManagedModel


class ServiceMetrics:
    def __init__(self) -> None:
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
        self.log_loss = Gauge(
            "adaserve_progressive_log_loss", "progressive log-loss over all rows", ["model"],
            registry=self.registry,
        )  # fmt: skip
        self.recent_log_loss = Gauge(
            "adaserve_recent_progressive_log_loss", "progressive log-loss, recent window",
            ["model"], registry=self.registry,
        )  # fmt: skip
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
        """Record a learned batch (called with the model's state lock held)."""
        model = managed.name
        self.rows_learned.labels(model).inc(result.rows)
        metrics = managed.model.metrics
        overall = metrics.totals[0] / metrics.totals[1] if metrics.totals[1] > 0 else None
        window = metrics.ring[: min(metrics.rows, metrics.window)]
        weight = window[:, 1].sum()
        recent = window[:, 0].sum() / weight if weight > 0 else None
        if overall is not None:
            self.log_loss.labels(model).set(overall)
        if recent is not None:
            self.recent_log_loss.labels(model).set(recent)

    def forget(self, model: str) -> None:
        for metric in (self.rows_learned, self.log_loss, self.recent_log_loss):
            with contextlib.suppress(KeyError):  # never labelled: nothing learned yet
                metric.remove(model)


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
