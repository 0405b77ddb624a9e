"""Errors as RFC 9457 problem documents in the ZGW APIs' shape (`invalidParams`: `name`, `code`, `reason`).

Every refusal of the service goes through `ApiProblem`, so each status has one body shape, one media
type (`application/problem+json`) and one place where its OpenAPI description is declared.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from worker.store.secret_box import SecretKeyError

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_BASE = "https://github.com/nlgov-outbox/problems/"


class InvalidParam(BaseModel):
    """One invalid field: where it is (`name`, dotted, with [i] for list items), a code, the rule it breaks."""

    name: str = Field(examples=["callbackUrl"])
    code: str = Field(examples=["invalid"])
    reason: str = Field(examples=["must use https"])


class Problem(BaseModel):
    """RFC 9457 problem details, as the ZGW APIs answer them."""

    model_config = ConfigDict(populate_by_name=True)

    type: str = Field(description="URI naming the kind of problem", examples=[_TYPE_BASE + "invalid"])
    code: str = Field(description="machine-readable code, e.g. invalid, not_authenticated, permission_denied")
    title: str
    status: int
    detail: str
    instance: str = Field(description="urn:uuid: of this occurrence (quote it when asking the operator)")
    invalid_params: list[InvalidParam] | None = Field(
        None, alias="invalidParams", description="each invalid field (400 answers)"
    )


class ApiProblem(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        invalid_params: Sequence[InvalidParam] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.invalid_params = list(invalid_params)
        self.headers = headers or {}

    def response(self) -> Response:
        body: dict[str, Any] = {
            "type": _TYPE_BASE + self.code,
            "code": self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": f"urn:uuid:{uuid.uuid4()}",
        }
        if self.invalid_params:
            body["invalidParams"] = [p.model_dump() for p in self.invalid_params]
        return Response(orjson.dumps(body), self.status, headers=self.headers, media_type=PROBLEM_MEDIA_TYPE)


def invalid(params: Iterable[InvalidParam], detail: str = "The request has invalid fields.") -> ApiProblem:
    return ApiProblem(400, "invalid", "Invalid input.", detail, list(params))


def from_problems(problems: Iterable[str], prefix: str = "") -> ApiProblem:
    """`field: rule` lines (InvalidSubscriptionError, InvalidEventError) as one 400."""
    params = []
    for line in problems:
        name, sep, reason = line.partition(": ")
        if not sep:
            name, reason = "nonFieldErrors", line
        params.append(InvalidParam(name=prefix + name, code="invalid", reason=reason))
    return invalid(params)


def not_found(what: str) -> ApiProblem:
    return ApiProblem(404, "not_found", "Not found.", f"No {what} here (or not one of yours).")


def _location(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    name = ""
    for part in parts:
        name += f"[{part}]" if part.isdigit() else (f".{part}" if name else part)
    return name or "nonFieldErrors"


def validation_problem(errors: Sequence[Any]) -> ApiProblem:
    """pydantic's errors, one invalid param each (`type` as the code, `msg` as the reason)."""
    params = []
    for error in errors:
        message = str(error.get("msg", "invalid"))
        params.append(
            InvalidParam(
                name=_location(error.get("loc", ())),
                code=str(error.get("type", "invalid")),
                reason=message.removeprefix("Value error, "),
            )
        )
    return invalid(params)


def unavailable() -> ApiProblem:
    return ApiProblem(
        503,
        "unavailable",
        "Service unavailable.",
        "The database does not answer; nothing was stored. Try again shortly.",
        headers={"Retry-After": "5"},
    )


DATABASE_DOWN = (psycopg.OperationalError, PoolTimeout)
_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed(request: Request) -> list[str]:
    """The methods some route takes at this path (asked of the routes themselves, included routers too)."""
    return [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in request.app.routes)
    ]


def install(app: FastAPI) -> None:
    """Every error as a problem document: ours, pydantic's, Starlette's (404, 405), an unreachable database (503)."""

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiProblem)
        return exc.response()

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return validation_problem(exc.errors()).response()

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        titles = {404: ("not_found", "Not found."), 405: ("method_not_allowed", "Method not allowed.")}
        code, title = titles.get(exc.status_code, ("error", "Error."))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only those of the first route that matched it
            headers["Allow"] = ", ".join(_allowed(request))
        return ApiProblem(exc.status_code, code, title, str(exc.detail), headers=headers).response()

    async def on_database_down(request: Request, exc: Exception) -> Response:
        return unavailable().response()

    async def on_secret_key(request: Request, exc: Exception) -> Response:
        # The message names the subscription or client and the setting, never a secret.
        return ApiProblem(500, "secret_key", "Stored secrets cannot be opened.", str(exc)).response()

    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(SecretKeyError, on_secret_key)
    for kind in DATABASE_DOWN:
        app.add_exception_handler(kind, on_database_down)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entries of these problem answers."""
    described = {
        400: "Invalid input: `invalidParams` names each invalid field.",
        401: "No valid JWT: missing, malformed, badly signed, expired, or from an unknown client.",
        403: "The client lacks the scope this operation needs.",
        404: "No such resource, or not one of the client's.",
        408: "The request body did not arrive in time.",
        409: "In conflict with what is stored: a unique field another resource has (`invalidParams` names it), "
        "or a change made by someone else meanwhile.",
        413: "The request body is over the size limit.",
        415: "The Content-Type is not one this operation takes.",
        429: "Over the client's request rate: try again after Retry-After seconds.",
        503: "The database is unreachable: try again later.",
    }
    return {
        status: {
            "description": described[status],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
