"""`/console/`: the operators' pages in `outbox serve` (same process and database pool as the API).

Server-rendered (Jinja2, `templates/`), every page usable without JavaScript; the vendored htmx
(`static/htmx.min.js`) only refreshes the overview. `install` adds it to the app.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from worker.service.console import catalogue, consumers, deliveries, events, overview, signin, subscriptions
from worker.service.console.pages import PREFIX, ConsoleError, SignInNeeded, render
from worker.service.console.security import ConsoleHeaders, current_session

ROUTERS = (
    signin.router,
    overview.router,
    subscriptions.router,
    deliveries.router,
    events.router,
    catalogue.router,
    consumers.router,
)


def install(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router, prefix=PREFIX, include_in_schema=False)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=Path(__file__).parent / "static"), name="console-static")

    @app.get(PREFIX, include_in_schema=False)
    async def console_root() -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=308)

    async def on_sign_in_needed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInNeeded)
        params = {"next": exc.next_path, **({"notice": "expired"} if exc.expired else {})}
        target = f"{PREFIX}/sign-in?{urlencode(params)}"
        if request.headers.get("hx-request"):  # an htmx swap: the whole page goes to the sign-in
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    async def on_console_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleError)
        session = await current_session(request)
        return render(request, "error.html", session, status_code=exc.status_code, kind=exc.kind, details=exc.details)

    # Starlette's 404 and 405 (no route, no static file, another method) under /console/ are pages for a
    # person, not the API's problem documents: everything else stays with the handler problems.install set.
    api_handler = app.exception_handlers.get(StarletteHTTPException)
    assert api_handler is not None, "problems.install(app) comes before console.install(app)"

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if (request.url.path + "/").startswith(PREFIX + "/") and exc.status_code in (404, 405):
            session = await current_session(request)
            kind = "page" if exc.status_code == 404 else "method"
            response = render(request, "error.html", session, status_code=exc.status_code, kind=kind, details={})
            response.headers.update(exc.headers or {})
            return response
        return await api_handler(request, exc)  # type: ignore[no-any-return,misc]

    app.add_exception_handler(SignInNeeded, on_sign_in_needed)
    app.add_exception_handler(ConsoleError, on_console_error)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_middleware(ConsoleHeaders)
