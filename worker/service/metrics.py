"""`outbox serve`'s Prometheus metrics, served on a listener of their own (`OUTBOX_SERVE_METRICS_PORT`, on
127.0.0.1 unless `OUTBOX_SERVE_METRICS_HOST`), as the worker's are: never on the public port, where every
endpoint must authenticate.

Per consumer (label `consumer` = its endpoint, a slug the operator chose; unknown endpoints are not counted, so
a scan cannot grow the label set): requests by `outcome` (`accepted`, `duplicate`, `unauthorized`, `disabled`,
`too_large`, `rate_limited`, `unprocessable`, `unavailable`, `bad_request`) and refusals by verification `code`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.exposition import generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

OUTCOMES = (
    "accepted", "duplicate", "unauthorized", "disabled", "too_large", "rate_limited", "unprocessable",
    "unavailable", "bad_request",
)  # fmt: skip


disable_created_metrics()  # type: ignore[no-untyped-call]


class ServeMetrics:
    """The service's registry (no `_created` series, as the worker's)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.consumer_requests = Counter(
            "outbox_consumer_requests",
            "Requests to /hooks/{endpoint}, per consumer and outcome.",
            ["consumer", "outcome"],
            registry=self.registry,
        )
        self.consumer_refusals = Counter(
            "outbox_consumer_refusals",
            "Requests to /hooks/{endpoint} refused by verification (answered 401), per consumer and reason code.",
            ["consumer", "code"],
            registry=self.registry,
        )
        self.consumer_seconds = Histogram(
            "outbox_consumer_request_seconds",
            "Time from a /hooks request's arrival to its answer (verified, mapped and committed when accepted).",
            ["consumer"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )

    def app(self) -> Starlette:
        async def metrics(request: Request) -> Response:
            return Response(generate_latest(self.registry), media_type="text/plain; version=0.0.4; charset=utf-8")

        async def healthz(request: Request) -> Response:
            return PlainTextResponse("ok\n")

        return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz)])
