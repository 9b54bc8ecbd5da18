"""Litestar's Prometheus middleware with a lighter step per request; same metrics, same labels.

The stock middleware builds a Request, two label dicts and a ``functools.wraps`` closure for every
request, and looks each metric's labelled child up again each time: about a tenth of the API's CPU
when it enqueues single jobs. This one reads the scope directly and keeps the labelled children
it has used. It exports exactly what the stock one does (``jobyard_http_requests_total``,
``..._request_duration_seconds``, ``..._requests_in_progress``, ``..._requests_error_total``), so
dashboards and alerts built on Litestar's names keep working.
"""

from __future__ import annotations

import time
from typing import Any

from litestar.plugins.prometheus import PrometheusConfig, PrometheusMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

_LABEL_NAMES = ("method", "path", "status_code", "app_name")


class HttpMetricsMiddleware(PrometheusMiddleware):
    def __init__(self, app: ASGIApp, config: PrometheusConfig) -> None:
        super().__init__(app, config)
        if config.labels or config.exemplars or not config.group_path:
            raise ValueError("HttpMetricsMiddleware supports grouped paths without extra labels")
        labels: dict[str, str | int | float] = dict.fromkeys(_LABEL_NAMES, "")
        self._in_progress = self.requests_in_progress(labels)
        self._count = self.request_count(labels)
        self._time = self.request_time(labels)
        self._errors = self.requests_error_count(labels)
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *values: Any) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            if len(self._children) > 10_000:  # route templates are few; this only bounds a surprise
                self._children.clear()
            child = self._children[key] = metric.labels(*values)
        return child

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", scope["type"])
        if self._config.excluded_http_methods and method in self._config.excluded_http_methods:
            await self.app(scope, receive, send)
            return
        path = scope.get("path_template", scope["path"])
        app_name = self._config.app_name
        started = time.perf_counter()
        status = 200
        duration = 0.0

        async def send_observed(message: Message) -> None:
            nonlocal status, duration
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                duration = time.perf_counter() - started
            await send(message)

        in_progress = self._child(self._in_progress, method, path, 200, app_name)
        in_progress.inc()
        try:
            await self.app(scope, receive, send_observed)
        finally:
            in_progress.dec()
            if status >= 500:
                self._child(self._errors, method, path, status, app_name).inc()
            self._child(self._count, method, path, status, app_name).inc()
            self._child(self._time, method, path, status, app_name).observe(duration)
