"""Errors as RFC 9457 problem documents in the ZGW APIs' shape (`invalidParams`: `name`, `code`, `reason`).

Every refusal of the service goes through `ApiProblem`, so each status has one body shape, one media
type (`application/problem+json`) and one place where its OpenAPI description is declared.

A problem's `type` is a page this service serves itself, `/problems/{code}` (`PAGES`: a short
human-readable text per code): an absolute URI under OUTBOX_PUBLIC_URL when that is set, otherwise the
relative reference `/problems/{code}`, which RFC 9457 §3.1.1 allows and which resolves against the
request's own URI to this service. The pages need no JWT: they are the same static text for everyone,
say nothing about any client or resource, and a client refused for its token must be able to read them.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
import psycopg
from fastapi import APIRouter, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, Response
from starlette.routing import Match

from worker.store.secret_box import SecretKeyError

PROBLEM_MEDIA_TYPE = "application/problem+json"
PAGES_PATH = "/problems"


@dataclass(frozen=True)
class Page:
    """What a problem `type` URI shows: the status it comes with, its title, what it means and what to do."""

    status: int
    title: str
    text: str


_RESEND = "Send a new ZGW JWT (HS256, claims client_id and iat) signed with your client's current secret."
PAGES: dict[str, Page] = {
    "invalid": Page(400, "Invalid input.", "The request has invalid fields: `invalidParams` names each one "
                    "with the rule it breaks. Nothing was stored. Correct those fields and send it again."),
    "disconnected": Page(400, "Client disconnected.", "The request body did not arrive whole; nothing was "
                         "stored. Send the request again."),
    "not_authenticated": Page(401, "Authentication credentials were not provided.",
                              "The request has no `Authorization: Bearer <JWT>` header. " + _RESEND),
    "jwt-decode-error": Page(401, "Invalid token.", "The bearer token is not a JWT signed with HS256. " + _RESEND),
    "missing-client-identifier": Page(401, "Invalid token.", "The JWT names no client: give the client_id "
                                      "(or iss) claim. " + _RESEND),
    "invalid-client-identifier": Page(401, "Invalid token.", "The JWT names a client that is not registered "
                                      "here. Ask the operator for a client (`outbox clients add`)."),
    "jwt-missing-iat-claim": Page(401, "Invalid token.", "The JWT has no iat (issued at) claim. " + _RESEND),
    "jwt-expired": Page(401, "Invalid token.", "The JWT has expired, or its iat is older than the service "
                        "allows (OUTBOX_JWT_MAX_AGE). " + _RESEND),
    "jwt-immature": Page(401, "Invalid token.", "The JWT is issued in the future (iat): check the client's "
                         "clock."),
    "invalid-jwt-signature": Page(401, "Invalid token.", "The JWT's signature does not match the client's "
                                  "secret; it may have been rotated. " + _RESEND),
    "jwt-invalid": Page(401, "Invalid token.", "The JWT is not valid (the detail says why). " + _RESEND),
    "webhook_unverified": Page(401, "The webhook request is not verified.", "A consumer's webhook request "
                               "failed its verification (the detail names the header or rule: a signature that "
                               "does not match, a stale timestamp, a wrong token). Nothing was stored. Check the "
                               "secret the sender signs with and its clock."),
    "permission_denied": Page(403, "You do not have permission to perform this action.",
                              "The client lacks the scope this operation needs (the detail names it). Ask "
                              "the operator to grant it."),
    "not_found": Page(404, "Not found.", "No such resource, or not one of the calling client's."),
    "method_not_allowed": Page(405, "Method not allowed.", "This path does not take this method: the Allow "
                               "header lists the ones it takes."),
    "request_timeout": Page(408, "Request timeout.", "The request body did not arrive in time "
                            "(OUTBOX_REQUEST_TIMEOUT for each part, OUTBOX_BODY_TIMEOUT for the whole). "
                            "Nothing was stored; the connection is closed. Send the request again."),
    "conflict": Page(409, "Conflict.", "The request conflicts with what is stored: a unique field another "
                     "resource has, an event `id` already taken in from the same `source` with other "
                     "content, a change someone else made meanwhile, a mapping that consumers still use, or a kept "
                     "request replayed already. `invalidParams` names the field. Nothing was stored."),
    "built-in": Page(409, "Conflict.", "The event type is one of the outbox's built-in operational types "
                     "(nl.overheid.outbox.…): only its isEnabled may change, and it cannot be removed. Nothing "
                     "was stored."),
    "too_large": Page(413, "Request entity too large.", "The request body, an event or a batch is over its "
                      "size limit (the detail names it). Nothing was stored."),
    "unsupported_media_type": Page(415, "Unsupported media type.", "The Content-Type is not one this "
                                   "operation takes (the detail lists them). Nothing was stored."),
    "unprocessable": Page(422, "The payload cannot be turned into an event.", "A consumer's webhook payload "
                          "fails its mapping, the NL GOV CloudEvents profile or the event catalogue's schema "
                          "(`invalidParams` names each fault). Nothing was stored; the request is kept for the "
                          "operator, who can replay it once the mapping is fixed."),
    "target_missing": Page(503, "The consumer's target is gone.", "The catalogue entry or subscription a "
                           "consumer delivers to does not exist. Nothing was stored; the request is kept for the "
                           "operator. Try again later."),
    "throttled": Page(429, "Too many requests.", "The client is over its request rate (OUTBOX_RATE_LIMIT, "
                      "counted over every process of the service). Try again after Retry-After seconds."),
    "secret_key": Page(500, "Stored secrets cannot be opened.", "A stored secret cannot be decrypted with "
                       "OUTBOX_SECRET_KEY. Tell the operator (quote the instance)."),
    "error": Page(500, "Error.", "The request could not be answered (the detail says why)."),
    "unavailable": Page(503, "Service unavailable.", "The database does not answer; nothing was stored. Try "
                        "again after Retry-After seconds."),
}  # fmt: skip


def problem_type(code: str, base: str = "") -> str:
    """The `type` URI of a problem code: `base` (OUTBOX_PUBLIC_URL, or "": relative) + /problems/{code}."""
    return f"{base}{PAGES_PATH}/{code}" if code in PAGES else "about:blank"


class InvalidParam(BaseModel):
    """One invalid field: where it is (`name`, dotted, with [i] for list items), a code, the rule it breaks."""

    name: str = Field(examples=["callbackUrl"])
    code: str = Field(examples=["invalid"])
    reason: str = Field(examples=["must use https"])


class Problem(BaseModel):
    """RFC 9457 problem details, as the ZGW APIs answer them."""

    model_config = ConfigDict(populate_by_name=True)

    type: str = Field(
        description="URI of the kind of problem: a page of this service, absolute under its public URL when "
        "that is configured, else the relative reference /problems/{code}",
        examples=["/problems/invalid", "https://notificaties.example.nl/problems/invalid"],
    )
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

    def response(self, base: str = "") -> Response:
        """The answer; `base` is the service's public URL for an absolute `type` ("": relative)."""
        body: dict[str, Any] = {
            "type": problem_type(self.code, base),
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


# A read-only server (a standby) is no database for writing either: WritablePool closes that connection.
DATABASE_DOWN = (psycopg.OperationalError, PoolTimeout, psycopg.errors.ReadOnlySqlTransaction)
_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed(request: Request) -> list[str]:
    """The methods some route takes at this path (asked of the routes themselves, included routers too)."""
    return [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in request.app.routes)
    ]


def base_of(request: Request) -> str:
    """Where problem pages are: OUTBOX_PUBLIC_URL, or "" (relative `type` references)."""
    service = getattr(request.app.state, "service", None)
    return (service.settings.public_url or "") if service is not None else ""


def install(app: FastAPI) -> None:
    """Every error as a problem document: ours, pydantic's, Starlette's (404, 405), an unreachable database (503)."""

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiProblem)
        return exc.response(base_of(request))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return validation_problem(exc.errors()).response(base_of(request))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        titles = {404: ("not_found", "Not found."), 405: ("method_not_allowed", "Method not allowed.")}
        code, title = titles.get(exc.status_code, ("error", "Error."))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only those of the first route that matched it
            headers["Allow"] = ", ".join(_allowed(request))
        return ApiProblem(exc.status_code, code, title, str(exc.detail), headers=headers).response(base_of(request))

    async def on_database_down(request: Request, exc: Exception) -> Response:
        return unavailable().response(base_of(request))

    async def on_secret_key(request: Request, exc: Exception) -> Response:
        # The message names the subscription or client and the setting, never a secret.
        problem = ApiProblem(500, "secret_key", "Stored secrets cannot be opened.", str(exc))
        return problem.response(base_of(request))

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


pages = APIRouter(tags=["problems"])


@pages.get(
    PAGES_PATH + "/{name}",
    summary="What a problem type means",
    description="The page a problem document's `type` points to: its status, title, what it means and what "
    "to do. Static text, the same for every caller: no JWT needed.",
    response_class=HTMLResponse,
    responses={
        200: {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}},
        **responses(404),
    },
)
async def problem_page(
    name: Annotated[
        str, Path(description="a problem code", json_schema_extra={"enum": sorted(PAGES)})  # unknown: 404
    ],
) -> Response:
    page = PAGES.get(name)
    if page is None:
        raise not_found("problem type")
    title = html.escape(page.title)
    text = html.escape(page.text)
    body = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{page.status} {title}</title></head>\n"
        f"<body><h1>{title}</h1>\n<p>HTTP status {page.status}; problem code <code>{html.escape(name)}</code>.</p>\n"
        f"<p>{text}</p>\n</body></html>\n"
    )
    return HTMLResponse(body)
