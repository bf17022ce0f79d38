"""Prometheus metrics (prometheus-client), one registry per app."""

from __future__ import annotations

import bisect
import contextlib
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.routing import Mount, Route
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


class _Feedback(Collector):
    """Delayed labels of each model with feedback: rows pending (and their bytes), rows labelled,
    expired and dropped, the join rate, the served metrics (log-loss, recent AUC, calibration of
    the probabilities served, against the labels that arrived) and the label delay's quantiles
    over the recent labels. Read when scraped, without the model's lock (as above)."""

    def __init__(self, models: Callable[[], Iterable[ManagedModel]]) -> None:
        self.models = models

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        def gauge(name: str, text: str, *labels: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"adaserve_feedback_{name}", text, labels=["model", *labels])

        pending = gauge("pending_rows", "rows predicted with an id, waiting for their label")
        pending_bytes = gauge("pending_bytes", "memory of the pending rows (in the budget)")
        resolved = CounterMetricFamily(
            "adaserve_feedback_rows", "pending rows resolved: labelled, expired (learned as "
            "non-clicks) or dropped", labels=["model", "outcome"],
        )  # fmt: skip
        join_rate = gauge("join_rate", "labelled / (labelled + expired + dropped)")
        served = gauge(
            "served", "served probabilities against the labels that arrived: log_loss (all), "
            "recent_auc, calibration (mean served / mean label, all)", "metric",
        )  # fmt: skip
        delay = gauge("delay_seconds", "prediction to label, recent labels", "quantile")
        for managed in list(self.models()):
            feedback = managed.model.feedback
            if feedback is None:
                continue
            name = managed.name
            summary = feedback.summary()
            pending.add_metric([name], summary["pending"])
            pending_bytes.add_metric([name], summary["pending_bytes"])
            for outcome in ("labelled", "expired", "dropped"):
                resolved.add_metric([name, outcome], summary[outcome])
            if summary["join_rate"] is not None:
                join_rate.add_metric([name], summary["join_rate"])
            overall, recent = summary["served"]["overall"], summary["served"]["recent"]
            for metric, value in (
                ("log_loss", overall["log_loss"]), ("recent_auc", recent["auc"]),
                ("calibration", overall["calibration"]),
            ):  # fmt: skip
                if value is not None:
                    served.add_metric([name, metric], value)
            for quantile in ("p50", "p90", "p99"):
                value = summary["delay_seconds"][quantile]
                if value is not None:
                    delay.add_metric([name, f"0.{quantile[1:]}"], value)
        yield from (pending, pending_bytes, resolved, join_rate, served, delay)


class _RequestMetrics(Collector):
    """Requests by route template, method and status, and their latency by route and method
    (Prometheus' default buckets), counted in plain Python and turned into metric families when
    /metrics is scraped.

    A Counter child and a Histogram child updated on every request cost ~12 µs on a busy server
    (each takes a lock; the histogram walks its buckets in Python), a tenth of a single-row
    prediction; this is a dict lookup, a bisection and three additions. Counted and collected on
    the event loop (the middleware, the async /metrics route), so no lock is needed.
    """

    BOUNDS = Histogram.DEFAULT_BUCKETS[:-1]  # the finite upper bounds; +Inf follows

    def __init__(self) -> None:
        # (route, method, status) -> [requests, seconds in all, requests per bucket]
        self.series: dict[tuple[str, str, int], list] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        series = self.series.get((route, method, status))
        if series is None:
            series = self.series[route, method, status] = [0, 0.0, [0] * (len(self.BOUNDS) + 1)]
        series[0] += 1
        series[1] += seconds
        series[2][bisect.bisect_left(self.BOUNDS, seconds)] += 1  # le: seconds <= bound

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        requests = CounterMetricFamily(
            "adaserve_requests", "HTTP requests", labels=["route", "method", "status"]
        )
        latency = HistogramMetricFamily(
            "adaserve_request_seconds", "HTTP request latency", labels=["route", "method"]
        )
        by_route: dict[tuple[str, str], tuple[list[float], list[int]]] = {}
        for (route, method, status), (count, seconds, buckets) in sorted(self.series.items()):
            requests.add_metric([route, method, str(status)], count)
            total, counts = by_route.setdefault((route, method), ([0.0], [0] * len(buckets)))
            total[0] += seconds
            counts[:] = [a + b for a, b in zip(counts, buckets, strict=True)]
        bounds = [*map(floatToGoString, self.BOUNDS), "+Inf"]
        for (route, method), (total, counts) in by_route.items():
            cumulative = list(zip(bounds, itertools.accumulate(counts), strict=True))
            latency.add_metric([route, method], cumulative, sum_value=total[0])
        yield requests
        yield latency


class ServiceMetrics:
    def __init__(self, models: Callable[[], Iterable[ManagedModel]] = tuple) -> None:
        """``models``: the models whose progressive log-loss /metrics reports."""
        self.registry = CollectorRegistry()
        self.requests = _RequestMetrics()
        self.registry.register(self.requests)
        self.rows_learned = Counter(
            "adaserve_rows_learned", "rows learned", ["model"], registry=self.registry
        )
        self.registry.register(_ProgressiveLogLoss(models))
        self.registry.register(_Feedback(models))

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count a request and its latency (on the event loop, as the middleware runs)."""
        self.requests.observe(route, method, status, seconds)

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
        self._templates: dict[object, str] | None = None

    def template(self, scope: Scope) -> str:
        """The matched route's path template. Starlette's own routes and mounts (/docs,
        /openapi.json, the docs' files) leave only their endpoint in the scope: it is looked up
        among the app's routes. A request no route matched is ``unmatched``."""
        route = scope.get("route")
        if route is not None:
            return route.path
        if self._templates is None:
            self._templates = {}
            for candidate in scope["app"].routes:
                if isinstance(candidate, Mount):
                    self._templates[candidate.app] = f"{candidate.path}/{{path}}"
                elif isinstance(candidate, Route):
                    self._templates[candidate.endpoint] = candidate.path
        return self._templates.get(scope.get("endpoint"), "unmatched")

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
            self.metrics.request_done(
                self.template(scope), scope.get("method", ""), status, time.perf_counter() - start
            )
