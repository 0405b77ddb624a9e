"""Rendering: the Jinja2 templates of `templates/` (autoescaped, every text of a page in them) and the
answers of the console that are not pages of their own (an error, a redirect)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from worker.service.console.sessions import Session

PREFIX = "/console"
_HERE = Path(__file__).parent

ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a misspelt name fails the page (and its test), not shows nothing
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: datetime | None) -> str:
    if value is None:
        return "–"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _age(seconds: float | None) -> str:
    """An age for a person: 45 s, 12 min 5 s, 3 h 2 min, 4 d 1 h."""
    if seconds is None:
        return "–"
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    if whole < 86_400:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86_400} d {whole % 86_400 // 3600} h"


def _query(base: dict[str, Any], **changes: Any) -> str:
    """The query string of `base` with `changes` (None drops a parameter), for links that keep filters."""
    merged = {**base, **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "")}, doseq=True)


ENVIRONMENT.filters["when"] = _when
ENVIRONMENT.filters["age"] = _age
ENVIRONMENT.globals["query"] = _query
ENVIRONMENT.globals["prefix"] = PREFIX
# The sections of the navigation that have their pages (base.html lists them all, in order).
ENVIRONMENT.globals["available_sections"] = {
    "/", "/subscriptions", "/deliveries", "/failed", "/events", "/event-types", "/consumers",
}  # fmt: skip


def render(
    request: Request, template: str, session: Session | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A page; `session` (None on the sign-in page) gives the header and the CSRF token of its forms."""
    html = ENVIRONMENT.get_template(template).render(
        request=request,
        session=session,
        csrf=session.csrf if session else context.pop("csrf", ""),
        path=request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


def redirect(path: str, **params: Any) -> Response:
    """303 See Other after a form (the browser then GETs the page): `params` become its query."""
    target = path + (f"?{urlencode(params)}" if params else "")
    return RedirectResponse(target, status_code=303)


class ConsoleError(Exception):
    """An answer of the console as a page: `kind` picks its text in `error.html`."""

    def __init__(self, status_code: int, kind: str, **details: Any) -> None:
        super().__init__(kind)
        self.status_code = status_code
        self.kind = kind
        self.details = details


class SignInNeeded(Exception):
    """No valid session: the browser goes to the sign-in page, and back to `next` after it."""

    def __init__(self, next_path: str, expired: bool) -> None:
        super().__init__(next_path)
        self.next_path = next_path
        self.expired = expired
