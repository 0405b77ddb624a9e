"""The console's protections: response headers (a strict CSP, no framing), the session cookie, and the
checks of every form post (a CSRF token tied to the session, the Origin, the operator role).

Cookies are Secure unless the console is served over plain HTTP on a loopback address (a browser
would not send a Secure cookie back there) and OUTBOX_PUBLIC_URL is not https; HttpOnly and
SameSite=Strict always, Path=/console/.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import Response
from starlette.datastructures import FormData
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.service.console.pages import PREFIX, ConsoleError, SignInNeeded
from worker.service.console.sessions import Session, session_for

if TYPE_CHECKING:
    from worker.service.app import Service

SESSION_COOKIE = "outbox_console"
SIGNIN_COOKIE = "outbox_console_signin"  # the sign-in form's own CSRF token (double submit: no session yet)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class ConsoleHeaders:
    """Adds `HEADERS` to every answer under /console/ (pages, redirects, static files, errors)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (scope["path"] + "/").startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in HEADERS}
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() not in names]
                message = {**message, "headers": kept + HEADERS}
            await send(message)

        await self.app(scope, receive, with_headers)


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def secure_cookies(request: Request) -> bool:
    # Behind a TLS proxy the request comes in over plain HTTP on loopback, yet the browser speaks HTTPS:
    # OUTBOX_PUBLIC_URL says so.
    if request.url.scheme == "https" or service_of(request).base_url(request).startswith("https://"):
        return True
    server = request.scope.get("server")
    try:
        return not (server and ipaddress.ip_address(server[0]).is_loopback)
    except ValueError:
        return True


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=f"{PREFIX}/",
        secure=secure_cookies(request),
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path=f"{PREFIX}/", secure=secure_cookies(request), httponly=True, samesite="strict")


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def check_origin(request: Request) -> None:
    """A form post comes from our own pages: an Origin (browsers send one with every POST) must be ours."""
    origin = request.headers.get("origin")
    if origin is None:
        return  # not a browser's form post: the CSRF token alone decides
    own = service_of(request).base_url(request)
    if origin.rstrip("/") != own.rstrip("/"):
        raise ConsoleError(403, "origin")


def same_token(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


async def current_session(request: Request) -> Session | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 200:
        return None
    service = service_of(request)
    return await session_for(service.pool, service.settings, token)


async def signed_in(request: Request) -> Session:
    """A page's dependency: the session, else the sign-in page (and back here after it)."""
    session = await current_session(request)
    if session is None:
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInNeeded(back if request.method == "GET" else PREFIX + "/", SESSION_COOKIE in request.cookies)
    return session


async def posted(request: Request) -> tuple[Session, FormData]:
    """A form post's session and fields: signed in, from our origin, with the session's CSRF token."""
    session = await signed_in(request)
    check_origin(request)
    form = await request.form()
    if not same_token(form.get("csrf"), session.csrf):  # type: ignore[arg-type]
        raise ConsoleError(403, "csrf")
    return session, form


async def acting(request: Request) -> tuple[Session, FormData]:
    """An action's session and fields: a form post (`posted`) by an operator; a viewer is refused."""
    session, fields = await posted(request)
    if not session.may_act:
        raise ConsoleError(403, "role")
    return session, fields
