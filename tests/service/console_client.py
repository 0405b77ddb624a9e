"""A browser without JavaScript for `/console/`: httpx with a cookie jar, pages parsed into their forms,
links and scripts, forms submitted as a browser submits them (every field of the form, then the redirect)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import httpx
import psycopg

OPERATOR, VIEWER = "olga", "vera"
PASSWORDS = {OPERATOR: "olga-has-a-long-password", VIEWER: "vera-has-a-long-password"}


def add_operator(database_url: str, name: str, role: str, password: str) -> None:
    """An account as `outbox operators add` makes it (the CLI itself is tested in test_console_security)."""
    from worker.store import operators as operator_store

    with psycopg.connect(database_url, autocommit=True) as conn:
        operator_store.add(conn, "outbox", name, role, password)


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[str] = field(default_factory=list)


@dataclass
class Page:
    """What a browser would see of an HTML answer."""

    response: httpx.Response
    forms: list[Form] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)  # text → href
    labels: dict[str, str] = field(default_factory=dict)  # for → text
    inputs: dict[str, dict[str, str]] = field(default_factory=dict)  # id → attributes
    scripts: list[dict[str, str]] = field(default_factory=list)  # attributes of each <script>, "" = inline text
    resources: list[str] = field(default_factory=list)  # every src and stylesheet href
    inline: list[str] = field(default_factory=list)  # style= and on*= attributes, inline <style>
    text: str = ""

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def html(self) -> str:
        return self.response.text

    def form(self, button: str) -> Form:
        """The form whose button says `button`."""
        found = [f for f in self.forms if button in f.buttons]
        assert len(found) == 1, f"one form with a {button!r} button, found {[f.buttons for f in self.forms]}"
        return found[0]


class _Parser(HTMLParser):
    def __init__(self, page: Page) -> None:
        super().__init__(convert_charrefs=True)
        self.page = page
        self.stack: list[tuple[str, dict[str, str], list[str]]] = []  # open a/label/button/script/style
        self.form: Form | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        for name in attributes:
            if name == "style" or name.startswith("on"):
                self.page.inline.append(f"{tag} {name}")
        if tag == "form":
            self.form = Form(attributes.get("action", ""), attributes.get("method", "get").lower())
            self.page.forms.append(self.form)
        elif tag in ("input", "textarea", "select"):
            if "id" in attributes:
                self.page.inputs[attributes["id"]] = attributes
            if self.form is not None and "name" in attributes:
                self.form.fields[attributes["name"]] = attributes.get("value", "")
        elif tag == "link" and attributes.get("rel") == "stylesheet":
            self.page.resources.append(attributes.get("href", ""))
        elif tag in ("img", "iframe", "embed", "object", "source"):
            self.page.resources.append(attributes.get("src", attributes.get("data", "")))
        if tag == "script":
            self.page.scripts.append(attributes)
            if "src" in attributes:
                self.page.resources.append(attributes["src"])
        if tag in ("a", "label", "button", "script", "style"):
            self.stack.append((tag, attributes, []))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.form = None
        if not self.stack or self.stack[-1][0] != tag:
            return
        _, attributes, parts = self.stack.pop()
        text = " ".join("".join(parts).split())
        if tag == "a" and "href" in attributes:
            self.page.links[text] = attributes["href"]
        elif tag == "label":
            self.page.labels[attributes.get("for", "")] = text
        elif tag == "button" and self.form is not None:
            self.form.buttons.append(text)
        elif tag == "script" and text:
            self.page.scripts.append({"": text})
        elif tag == "style":
            self.page.inline.append("<style>")

    def handle_data(self, data: str) -> None:
        for _, _, parts in self.stack:
            parts.append(data)
        self.text.append(data)


def parse(response: httpx.Response) -> Page:
    page = Page(response)
    parser = _Parser(page)
    parser.feed(response.text)
    page.text = " ".join("".join(parser.text).split())
    return page


class ConsoleClient:
    """One browser (one cookie jar) on the console of a live service; redirects are not followed unless
    asked, so each answer can be judged."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=20.0, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, follow: bool = False, **kwargs: Any) -> Page:
        return parse(self.http.get(path, follow_redirects=follow, **kwargs))

    def post(self, path: str, data: dict[str, str], follow: bool = False, **kwargs: Any) -> Page:
        return parse(self.http.post(path, data=data, follow_redirects=follow, **kwargs))

    def submit(self, page: Page, button: str, follow: bool = True, **values: str) -> Page:
        """Press `button` on `page`: its form's fields (hidden ones included) with `values` typed in."""
        form = page.form(button)
        assert form.method == "post" and form.action, f"the {button!r} form posts to a URL of its own"
        unknown = set(values) - set(form.fields)
        assert not unknown, f"the {button!r} form has no fields {unknown}"
        return self.post(form.action, {**form.fields, **values}, follow=follow)

    def sign_in(self, name: str, password: str | None = None, next_path: str | None = None) -> Page:
        """The sign-in form filled in and sent (no redirect followed)."""
        form_page = self.get("/console/sign-in" + (f"?next={next_path}" if next_path else ""))
        assert form_page.status == 200, form_page.status
        secret = PASSWORDS[name] if password is None else password
        return self.submit(form_page, "Sign in", follow=False, username=name, password=secret)

    @property
    def session_token(self) -> str | None:
        return self.http.cookies.get("outbox_console")

    def csrf(self) -> str:
        """The CSRF token the pages of this session carry (its sign-out form's)."""
        return self.get("/console/").form("Sign out").fields["csrf"]


def cookie_attributes(response: httpx.Response, name: str) -> dict[str, str]:
    """The attributes of the Set-Cookie of `name` (lower-case names; flags map to "")."""
    for header in response.headers.get_list("set-cookie"):
        parts = [p.strip() for p in header.split(";")]
        if parts[0].split("=", 1)[0] == name:
            attributes = {"value": parts[0].split("=", 1)[1]}
            for part in parts[1:]:
                key, _, value = part.partition("=")
                attributes[key.lower()] = value
            return attributes
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.get_list('set-cookie')}")


def csp_directives(response: httpx.Response) -> dict[str, list[str]]:
    policy = response.headers["content-security-policy"]
    directives = [d.split() for d in policy.split(";") if d.strip()]
    return {d[0]: d[1:] for d in directives}
