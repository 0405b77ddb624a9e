"""Sign-in and sign-out pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from worker.service.console import sessions
from worker.service.console.pages import PREFIX, ConsoleError, redirect, render
from worker.service.console.security import (
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    check_origin,
    clear_cookie,
    client_address,
    current_session,
    posted,
    same_token,
    service_of,
    set_cookie,
)
from worker.service.console.sessions import Session

router = APIRouter()

_MAX_FIELD = 1024


def _next(value: object) -> str:
    """Where to go after signing in: a console path of ours, never another site (`//host`, `/\\host`)."""
    text = str(value or "")
    if text.startswith(PREFIX + "/") and not text.startswith(("//", "/\\")) and "\\" not in text and len(text) < 2000:
        return text
    return PREFIX + "/"


def _form(request: Request, next_path: str, status_code: int = 200, failed: bool = False, notice: str = "") -> Response:
    token = request.cookies.get(SIGNIN_COOKIE) or sessions.new_token()
    settings = service_of(request).settings
    response = render(
        request,
        "signin.html",
        None,
        status_code=status_code,
        csrf=token,
        next_path=next_path,
        failed=failed,
        notice=notice,
        lockout_minutes=max(1, round(settings.console_lockout / 60)),
    )
    set_cookie(response, request, SIGNIN_COOKIE, token)
    return response


@router.get("/sign-in")
async def signin_page(request: Request) -> Response:
    next_path = _next(request.query_params.get("next"))
    if await current_session(request) is not None:
        return redirect(next_path)
    return _form(request, next_path, notice=request.query_params.get("notice", ""))


@router.post("/sign-in")
async def signin(request: Request) -> Response:
    check_origin(request)
    form = await request.form()
    if not same_token(form.get("csrf"), request.cookies.get(SIGNIN_COOKIE) or ""):  # type: ignore[arg-type]
        raise ConsoleError(403, "csrf")
    name, password = str(form.get("username") or ""), str(form.get("password") or "")
    next_path = _next(form.get("next"))
    if not name or not password or len(name) > _MAX_FIELD or len(password) > _MAX_FIELD:
        return _form(request, next_path, status_code=401, failed=True)
    service = service_of(request)
    session = await sessions.sign_in(service.pool, service.settings, name, password, client_address(request))
    if session is None:
        return _form(request, next_path, status_code=401, failed=True)
    response = redirect(next_path)
    set_cookie(response, request, SESSION_COOKIE, session.token)
    clear_cookie(response, request, SIGNIN_COOKIE)
    return response


@router.post("/sign-out")
async def signout(request: Request, form: Annotated[tuple[Session, object], Depends(posted)]) -> Response:
    session, _ = form
    service = service_of(request)
    await sessions.sign_out(service.pool, service.settings, session)
    response = redirect(f"{PREFIX}/sign-in", notice="signed-out")
    clear_cookie(response, request, SESSION_COOKIE)
    return response
