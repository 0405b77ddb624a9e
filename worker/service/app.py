"""The ASGI application of `outbox serve`: routes, the database pool, the intake writers, the limits."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import psycopg
import yaml
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel
from starlette.types import ASGIApp

from outbox._event import _INT32, _MEDIA_TYPE, _RFC3339
from outbox._sql import query
from worker.runtime import pooler
from worker.runtime.asgi import AsgiServer
from worker.runtime.logs import log
from worker.runtime.writable import WritablePool
from worker.service import console, event_types, hooks, problems, registration
from worker.service.abonnement import router as abonnement_router
from worker.service.auth import Authenticator
from worker.service.consumers_api import router as consumers_router
from worker.service.intake import IntakeFastPath, IntakeWriter
from worker.service.intake import router as intake_router
from worker.service.kanaal import router as kanaal_router
from worker.service.limits import BodyLimit, ClientRate
from worker.service.mappings_api import router as mappings_router
from worker.service.metrics import ServeMetrics
from worker.service.problems import DATABASE_DOWN
from worker.service.settings import ServeSettings
from worker.service.subscriptions_api import router as subscriptions_router
from worker.store import clients as client_store
from worker.store.clients import ApiClient
from worker.store.secret_box import SecretBox

API_PREFIX = "/api/v1"
DESCRIPTION = """The Notificaties API of the NL GOV CloudEvents outbox.

Producers POST cloud events to `/cloudevents` (structured, binary or batched content mode); client
applications register abonnementen (`/abonnement`, the ZGW Notificaties API) or, over the same
subscriptions, CloudEvents subscriptions (`/subscriptions`); the event catalogue is at
`/event-types`. Every operation needs a ZGW JWT (HS256) signed with the client's secret, except
`/hooks/{endpoint}`: external systems call a consumer there, verified by the consumer's own method. Errors
are RFC 9457 problem documents (`application/problem+json`) with `invalidParams` for invalid fields."""


@dataclass
class Service:
    """What every request may use; on `app.state.service`."""

    settings: ServeSettings
    pool: WritablePool
    box: SecretBox
    authenticator: Authenticator
    writer: IntakeWriter

    @property
    def schema(self) -> str:
        return self.settings.db_schema

    def base_url(self, request: Request) -> str:
        """The service's own root for `url` fields: OUTBOX_PUBLIC_URL, else as the client called us."""
        return self.settings.public_url or str(request.base_url).rstrip("/")


def asgi_app(settings: ServeSettings, url: str) -> ASGIApp:
    """What uvicorn serves: the application, with POST /cloudevents (the busiest path by far) answered in
    front of it, outside FastAPI's per-request middleware, routing and dependency resolution; so are consumers'
    POST /hooks/{endpoint} (each consumer has its own body limit)."""
    app = create_app(settings, url)
    return hooks.HooksFastPath(IntakeFastPath(app, app, f"{API_PREFIX}/cloudevents"), app)


UNTRACED_PATHS = frozenset({"/healthz", "/readyz"})


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    """Requests FastAPI's native telemetry leaves out: the health probes."""
    return scope.get("path") in UNTRACED_PATHS


def create_app(settings: ServeSettings, url: str) -> FastAPI:
    """The application for `outbox serve` (and tests), on the database at `url`."""
    box = settings.box

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
            # Short statements: compiling them costs more than it saves. Through PgBouncer: neither this SET
            # (it would reach other clients) nor prepared statements (docs/deploy/pgbouncer.md).
            await pooler.configure(conn, "SET jit = off")

        # Read-write connections only (target_session_attrs=read-write unless the URL chooses); while the
        # database is away a request waits at most a second for a connection: a quick 503, not a hang.
        pool = WritablePool(
            url,
            min_size=min(2, settings.pool_size),
            max_size=settings.pool_size,
            open=False,
            timeout=10.0,
            down_timeout=1.0,
            configure=configure,
            # One statement per write: its own transaction, one round trip.
            kwargs={"autocommit": True},
        )
        await pool.open(wait=False)

        async def load_client(client_id: str) -> ApiClient | None:
            async with pool.connection() as conn:
                cursor = await conn.execute(query("get_api_client", settings.db_schema), (client_id,))
                row = await cursor.fetchone()
            return None if row is None else client_store.from_row(row, box)

        authenticator = Authenticator(
            load_client,
            leeway=settings.jwt_leeway,
            max_age=settings.jwt_max_age,
            client_ttl=settings.client_cache_ttl,
            pace=ClientRate(pool, settings.db_schema, settings.rate_limit, settings.rate_burst).take,
        )
        writer = IntakeWriter(pool, settings.db_schema, writers=max(1, settings.pool_size // 2))
        service = app.state.service = Service(settings, pool, box, authenticator, writer)
        app.state.hooks = hooks.Hooks(service, app.state.metrics)
        metrics_server = None
        if settings.serve_metrics_port is not None:
            metrics_server = AsgiServer(app.state.metrics.app(), shutdown_timeout=1)
            await metrics_server.start(settings.serve_metrics_host, settings.serve_metrics_port)
            log(logging.INFO, "metrics server started", host=settings.serve_metrics_host, port=metrics_server.port)
        log(logging.INFO, "service started", host=settings.host, port=settings.port, schema=settings.db_schema)
        if not box.encrypts:
            log(logging.WARNING, "client and subscription secrets are stored unencrypted: set OUTBOX_SECRET_KEY")
        try:
            yield
        finally:
            if metrics_server is not None:
                await metrics_server.stop()
            await app.state.hooks.aclose()
            await writer.aclose()
            await pool.close(timeout=5.0)
            log(logging.INFO, "service stopped")

    app = FastAPI(
        title="NL GOV CloudEvents outbox: Notificaties API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/schema/openapi.json",
        docs_url=f"{API_PREFIX}/schema/docs",
        redoc_url=None,
        # FastAPI's own spans (once `outbox serve` set a tracer provider, docs/operate/tracing.md): a SERVER span
        # per API request, none for the probes that come every few seconds, and no spans per dependency.
        telemetry={"operation_spans": False, "exclude": _untraced},
    )
    app.state.metrics = ServeMetrics()
    problems.install(app)
    app.add_middleware(BodyLimit, settings=settings, other_limit=1024 * 1024)
    app.include_router(intake_router, prefix=API_PREFIX)
    app.include_router(abonnement_router, prefix=API_PREFIX)
    app.include_router(subscriptions_router, prefix=API_PREFIX)
    app.include_router(kanaal_router, prefix=API_PREFIX)
    app.include_router(event_types.router, prefix=API_PREFIX)
    app.include_router(consumers_router, prefix=API_PREFIX)
    app.include_router(mappings_router, prefix=API_PREFIX)
    app.include_router(hooks.router)
    app.include_router(problems.pages)
    console.install(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return PlainTextResponse("ok\n")

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        service: Service = request.app.state.service
        try:
            async with service.pool.connection(timeout=2.0) as conn:
                await conn.execute(query("schema_version", service.schema))
                # Ready means able to write: a server that turned read-only (a standby) is left like one that
                # refused a write (WritablePool closes the connection; libpq then looks for a primary).
                row = await (await conn.execute("SHOW transaction_read_only")).fetchone()
                if row is not None and row[0] == "on":
                    raise psycopg.errors.ReadOnlySqlTransaction("the server is read-only")
        except DATABASE_DOWN as exc:  # no primary (down, failing over, or only a standby answers)
            _not_ready(exc)
            return PlainTextResponse("not ready: database unreachable\n", 503)
        except Exception as exc:  # any failure means "not ready"; the reason goes to the log, not to the caller
            _not_ready(exc)
            return PlainTextResponse("not ready: the database does not answer, or its schema is not migrated\n", 503)
        return PlainTextResponse("ready\n")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            models: list[type[BaseModel]] = [
                problems.Problem,
                problems.InvalidParam,
                *registration.BODY_MODELS,
                *event_types.BODY_MODELS,
            ]
            for model in models:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            schemas["CloudEvent"] = CLOUDEVENT_SCHEMA
            complete(document)
            app.openapi_schema = document
        return app.openapi_schema

    @app.get(f"{API_PREFIX}/schema/openapi.yaml", include_in_schema=False)
    async def openapi_yaml() -> Response:
        text = yaml.safe_dump(app.openapi(), sort_keys=False, allow_unicode=True, width=120)
        return Response(text, media_type="application/yaml")

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _not_ready(exc: Exception) -> None:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    log(logging.WARNING, "not ready", reason=reason)


_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def complete(document: dict[str, Any]) -> None:
    """Every operation's problem answers, whoever wrote its route: 401/403/429/503 where a JWT is needed,
    400 where there is input, 404 where the path names a resource, 413/415 where there is a body.
    FastAPI's own 422 goes: validation errors are answered 400 (problems.validation_problem); a declared 422
    (/hooks: a payload the mapping refuses) stays."""
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            answers = operation.setdefault("responses", {})
            if answers.get("422", {}).get("description") == "Validation Error":  # FastAPI's, not a declared one
                answers.pop("422")
            statuses: list[int] = []
            if operation.get("security"):
                statuses += [401, 403, 429, 503]
            if operation.get("parameters") or operation.get("requestBody"):
                statuses.append(400)
            if "{" in path:
                statuses.append(404)
            if operation.get("requestBody"):
                statuses += [413, 415]
            for status, answer in problems.responses(*statuses).items():
                answers.setdefault(str(status), answer)
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


# What the NL GOV profile checks (outbox/_event.py), in the profile's own expressions.
_TEXT: dict[str, Any] = {"type": "string", "minLength": 1, "pattern": r"^[^\x00-\x1f\x7f]+$"}
_URI: dict[str, Any] = {**_TEXT, "pattern": r"^[^\x00-\x1f\x7f\s]+$"}


def _optional(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


CLOUDEVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A CloudEvent (specversion 1.0) in the JSON event format, under the NL GOV profile; "
    "a JSON null is an unset attribute. Other members are extension attributes (lowercase a-z0-9, at most "
    "20 characters; a string, a 32-bit integer or a boolean). No attribute may hold control characters.",
    "required": ["specversion", "id", "source", "type"],
    "properties": {
        "specversion": {"type": "string", "enum": ["1.0"]},
        "id": _TEXT,
        # A URI-reference by the spec; what is checked (and so all the document may promise) is no white space.
        "source": _URI,
        "type": {**_TEXT, "examples": ["nl.overheid.zaken.zaak-gekoppeld"]},
        "subject": _optional(_TEXT),
        "time": _optional({"type": "string", "pattern": _RFC3339.pattern, "format": "date-time"}),
        "datacontenttype": _optional({"type": "string", "pattern": _MEDIA_TYPE.pattern}),
        "dataschema": _optional(_URI),
        "dataref": _optional(_URI),
        "sequence": _optional(_TEXT),
        "sequencetype": _optional(_TEXT),
        "data": {"description": "any JSON value"},
        "data_base64": _optional({"type": "string", "contentEncoding": "base64"}),
        # The Distributed Tracing extension (docs/operate/tracing.md); ids not all zeros, version ff refused.
        "traceparent": _optional(
            {
                "type": "string",
                "pattern": r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-\S*)?$",
                "description": "W3C Trace Context traceparent; set from the request's traceparent "
                "header (or the intake span) when the event has none",
            }
        ),
        "tracestate": _optional(
            {"type": "string", "description": "W3C Trace Context tracestate, only with traceparent"}
        ),
    },
    "propertyNames": {"pattern": r"^([a-z0-9]{1,20}|data_base64)$"},
    "additionalProperties": {
        "anyOf": [
            {"type": "string", "pattern": r"^[^\x00-\x1f\x7f]*$"},
            {"type": "integer", "minimum": _INT32[0], "maximum": _INT32[1]},
            {"type": "boolean"},
            {"type": "null"},
        ]
    },
}
