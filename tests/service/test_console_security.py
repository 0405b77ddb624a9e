"""The console's protections over real HTTP: accounts by the CLI, sign-in and its cookie, sign-out and
session expiry, CSRF and Origin, roles, lockout, headers, no secret on a page, body limits, HTML 404s;
all with plain form posts (no JavaScript), as a browser without it would send them."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import httpx
import psycopg
import pytest

from tests.service.conftest import StartService
from tests.service.console_client import (
    OPERATOR,
    PASSWORDS,
    VIEWER,
    ConsoleClient,
    Page,
    add_operator,
    cookie_attributes,
    csp_directives,
    parse,
)
from tests.service.live import LiveService
from tests.support import Receiver, subscribe

AUTH = "Bearer auth-secret-value-0123456789"
HEADER_SECRET = "header-secret-value-0123456789"
QUERY_TOKEN = "query-token-secret-0123456789"
SIGNING = "whsec_" + base64.b64encode(b"s" * 32).decode()


@pytest.fixture
def accounts(database_url: str) -> None:
    add_operator(database_url, OPERATOR, "operator", PASSWORDS[OPERATOR])
    add_operator(database_url, VIEWER, "viewer", PASSWORDS[VIEWER])


@pytest.fixture
def subscription(database_url: str, callback: Receiver) -> str:
    """A subscription holding every kind of secret the pages must not show."""
    return subscribe(
        database_url,
        f"{callback.url}/hook",
        auth=AUTH,
        headers={"X-Api-Key": HEADER_SECRET},
        signing_secrets=[SIGNING],
    )


@pytest.fixture
def browsers(service: LiveService) -> Iterator[Any]:
    made: list[ConsoleClient] = []

    def new(base_url: str | None = None) -> ConsoleClient:
        made.append(ConsoleClient(base_url or service.base_url))
        return made[-1]

    yield new
    for client in made:
        client.close()


def signed_in(new: Any, name: str, base_url: str | None = None) -> ConsoleClient:
    client: ConsoleClient = new(base_url)
    answer = client.sign_in(name)
    assert answer.status == 303, answer.text
    return client


def rows(database_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def status_of(database_url: str, subscription_id: str) -> tuple[str, str | None]:
    [(status, reason)] = rows(
        database_url, "SELECT status, paused_reason FROM outbox.subscriptions WHERE id = %s", subscription_id
    )
    return status, reason


def audit(database_url: str) -> list[tuple[Any, ...]]:
    return rows(database_url, "SELECT operator, action, object_kind, object_id, detail, at FROM outbox.console_audit")


def goes_to_sign_in(page: Page) -> bool:
    return page.status == 303 and page.response.headers["location"].startswith("/console/sign-in")


# ---- accounts: `outbox operators …` ----


def test_operators_cli_adds_lists_changes_and_removes_accounts(
    run_cli: Any, service: LiveService, browsers: Any, database_url: str
) -> None:
    added = run_cli("operators", "add", "olga", "--role", "operator", "--password-stdin", input="first-long-password\n")
    assert added.returncode == 0, added.stderr
    assert "added operator olga (operator)" in added.stdout
    assert run_cli("operators", "add", "vera", "--role", "viewer", "--password-stdin", input="vera-long-password\n")

    [(stored,)] = rows(database_url, "SELECT password_hash FROM outbox.operators WHERE name = 'olga'")
    assert stored.startswith("$argon2id$") and "first-long-password" not in stored
    listed = run_cli("operators", "list")
    assert listed.returncode == 0 and "olga" in listed.stdout and "operator" in listed.stdout
    assert "vera" in listed.stdout and "viewer" in listed.stdout
    as_json = run_cli("operators", "list", "--json")
    document = json.loads(as_json.stdout)
    assert [(o["name"], o["role"]) for o in document] == [("olga", "operator"), ("vera", "viewer")]
    for output in (listed.stdout, as_json.stdout):
        assert "$argon2" not in output and "password" not in output.lower()

    # Refusals name the field and the rule, one line, and write nothing.
    bad_role = run_cli("operators", "add", "piet", "--role", "admin", "--password-stdin", input="piet-long-password\n")
    assert bad_role.returncode == 2 and "--role" in bad_role.stderr and "viewer" in bad_role.stderr
    empty = run_cli("operators", "add", "piet", "--role", "viewer", "--password-stdin", input="\n")
    assert empty.returncode != 0 and "password: none given" in empty.stderr
    short = run_cli("operators", "add", "piet", "--role", "viewer", "--password-stdin", input="short\n")
    assert short.returncode == 1 and "password: at least 12 characters" in short.stderr
    bad_name = run_cli("operators", "add", "x y", "--role", "viewer", "--password-stdin", input="piet-long-password\n")
    assert bad_name.returncode != 0 and "name:" in bad_name.stderr
    taken = run_cli("operators", "add", "olga", "--role", "viewer", "--password-stdin", input="other-long-password\n")
    assert taken.returncode == 1 and "already exists" in taken.stderr
    assert [n for (n,) in rows(database_url, "SELECT name FROM outbox.operators ORDER BY name")] == ["olga", "vera"]

    # The console signs in with what the CLI wrote; passwd ends the account's sessions at once.
    olga = browsers()
    assert olga.sign_in("olga", "first-long-password").status == 303
    assert olga.get("/console/").status == 200
    changed = run_cli("operators", "passwd", "olga", "--password-stdin", input="second-long-password\n")
    assert changed.returncode == 0, changed.stderr
    assert goes_to_sign_in(olga.get("/console/"))
    assert browsers().sign_in("olga", "first-long-password").status == 401
    assert olga.sign_in("olga", "second-long-password").status == 303

    # role: a viewer now, at the next request (the buttons go), and an operator again.
    page = olga.get("/console/subscriptions")
    assert "(operator)" in page.text
    assert run_cli("operators", "role", "olga", "viewer").returncode == 0
    assert "(viewer)" in olga.get("/console/").text
    unknown_role = run_cli("operators", "role", "olga", "root")
    assert unknown_role.returncode == 2 and "viewer" in unknown_role.stderr
    missing = run_cli("operators", "role", "nobody", "viewer")
    assert missing.returncode == 1 and "no operator named 'nobody'" in missing.stderr

    # remove: its session ends and it cannot sign in.
    removed = run_cli("operators", "remove", "olga")
    assert removed.returncode == 0 and "removed operator olga" in removed.stdout
    assert goes_to_sign_in(olga.get("/console/"))
    assert browsers().sign_in("olga", "second-long-password").status == 401
    assert run_cli("operators", "remove", "olga").returncode == 1


# ---- sign-in, the cookie, sign-out, expiry ----


def test_the_sign_in_form_refuses_a_wrong_password_and_gives_a_strict_cookie_for_the_right_one(
    accounts: None, browsers: Any, database_url: str
) -> None:
    client: ConsoleClient = browsers()
    first = client.get("/console/subscriptions")
    assert goes_to_sign_in(first)
    form = client.get(first.response.headers["location"])
    assert form.labels["username"] == "Username" and form.inputs["username"]["name"] == "username"
    assert form.labels["password"] == "Password" and form.inputs["password"]["type"] == "password"
    assert form.form("Sign in").fields["next"] == "/console/subscriptions"

    wrong = client.submit(form, "Sign in", follow=False, username=OPERATOR, password="not-the-password")
    assert wrong.status == 401
    assert "Sign-in failed" in wrong.text and PASSWORDS[OPERATOR] not in wrong.html
    assert client.session_token is None
    assert not any(h.startswith("outbox_console=") for h in wrong.response.headers.get_list("set-cookie"))
    assert rows(database_url, "SELECT count(*) FROM outbox.operator_sessions") == [(0,)]

    right = client.submit(wrong, "Sign in", follow=False, username=OPERATOR, password=PASSWORDS[OPERATOR])
    assert right.status == 303 and right.response.headers["location"] == "/console/subscriptions"
    cookie = cookie_attributes(right.response, "outbox_console")
    assert "httponly" in cookie and cookie["samesite"].lower() == "strict" and cookie["path"] == "/console/"
    # Plain HTTP on 127.0.0.1: a browser would not send a Secure cookie back, so the code leaves it off.
    assert "secure" not in cookie
    page = client.get("/console/subscriptions")
    assert page.status == 200 and f"Signed in as {OPERATOR}" in page.text
    # The database holds the token's hash, never the token.
    [(stored,)] = rows(database_url, "SELECT token_hash FROM outbox.operator_sessions")
    assert client.session_token is not None and client.session_token.encode() not in bytes(stored)

    # `next` never leads to another site.
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        other = browsers().sign_in(OPERATOR, next_path=target)
        assert other.response.headers["location"] == "/console/"


def test_cookies_are_secure_when_the_public_url_is_https(
    accounts: None, start_service: StartService, browsers: Any
) -> None:
    """Behind a TLS proxy (OUTBOX_PUBLIC_URL https) the request still arrives over HTTP on loopback."""
    live = start_service(public_url="https://outbox.example.nl")
    form = parse(httpx.get(f"{live.base_url}/console/sign-in"))
    signin_cookie = cookie_attributes(form.response, "outbox_console_signin")
    assert "secure" in signin_cookie
    fields = {**form.form("Sign in").fields, "username": OPERATOR, "password": PASSWORDS[OPERATOR]}
    answer = httpx.post(
        f"{live.base_url}/console/sign-in",
        data=fields,
        headers={"Cookie": f"outbox_console_signin={signin_cookie['value']}", "Origin": "https://outbox.example.nl"},
    )
    assert answer.status_code == 303
    assert "secure" in cookie_attributes(answer, "outbox_console")


def test_sign_out_ends_the_session(accounts: None, browsers: Any, service: LiveService, database_url: str) -> None:
    client = signed_in(browsers, OPERATOR)
    token = client.session_token
    page = client.get("/console/")
    out = client.submit(page, "Sign out", follow=False)
    assert out.status == 303 and out.response.headers["location"] == "/console/sign-in?notice=signed-out"
    assert "You are signed out" in client.get(out.response.headers["location"]).text
    assert rows(database_url, "SELECT count(*) FROM outbox.operator_sessions") == [(0,)]
    # The old cookie, kept by someone, is refused.
    replay = httpx.get(f"{service.base_url}/console/", cookies={"outbox_console": str(token)})
    assert replay.status_code == 303 and replay.headers["location"].startswith("/console/sign-in")


def test_a_session_ends_after_its_idle_time_and_at_its_maximum(
    accounts: None, start_service: StartService, browsers: Any, database_url: str
) -> None:
    """The smallest settings allowed (60 s idle, 300 s in all); the clock is moved by moving the session's
    times back in the database (the defaults, 30 min and 12 h, would keep these sessions alive)."""
    live = start_service(console_session_idle=60, console_session_max=300)
    shift = "UPDATE outbox.operator_sessions SET last_seen_at = last_seen_at - make_interval(secs => %s)"

    idle = signed_in(browsers, OPERATOR, live.base_url)
    rows(database_url, shift + " RETURNING 1", 50)
    assert idle.get("/console/").status == 200  # within the idle time: it works, and starts again
    rows(database_url, shift + " RETURNING 1", 50)
    assert idle.get("/console/").status == 200
    rows(database_url, shift + " RETURNING 1", 61)
    ended = idle.get("/console/subscriptions")
    assert ended.status == 303
    assert ended.response.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fsubscriptions&notice=expired"
    assert "Your session has ended" in idle.get(ended.response.headers["location"]).text

    rows(database_url, "DELETE FROM outbox.operator_sessions RETURNING 1")
    busy = signed_in(browsers, OPERATOR, live.base_url)
    # Used all along (last seen now), but signed in 301 s ago.
    rows(
        database_url,
        "UPDATE outbox.operator_sessions SET created_at = created_at - interval '301 s',"
        " expires_at = expires_at - interval '301 s' RETURNING 1",
    )
    assert goes_to_sign_in(busy.get("/console/"))


# ---- CSRF, Origin, roles, the audit trail ----


def test_a_post_without_the_right_token_or_from_another_origin_is_refused(
    accounts: None, subscription: str, browsers: Any, service: LiveService, database_url: str
) -> None:
    olga = signed_in(browsers, OPERATOR)
    vera = signed_in(browsers, VIEWER)
    pause = f"/console/subscriptions/{subscription}/pause"
    attempts = {
        "no token": ({"reason": "x"}, {}),
        "a wrong token": ({"reason": "x", "csrf": "0" * 64}, {}),
        "another session's token": ({"reason": "x", "csrf": vera.csrf()}, {}),
        "a foreign Origin": ({"reason": "x", "csrf": olga.csrf()}, {"Origin": "https://evil.example"}),
    }
    for what, (fields, headers) in attempts.items():
        refused = olga.post(pause, fields, headers=headers)
        assert refused.status == 403, what
        title = "Refused: the form came from another site" if "Origin" in headers else "The form has expired"
        assert title in refused.text and "Nothing was changed" in refused.text, what
    assert status_of(database_url, subscription) == ("active", None)
    assert audit(database_url) == []

    # Sign-out and sign-in are forms too.
    assert olga.post("/console/sign-out", {}).status == 403
    assert olga.get("/console/").status == 200
    stranger = browsers()
    forged = stranger.post("/console/sign-in", {"username": OPERATOR, "password": PASSWORDS[OPERATOR]})
    assert forged.status == 403 and stranger.session_token is None

    # The same post with the token, from our own origin, goes through.
    done = olga.post(pause, {"reason": "x", "csrf": olga.csrf()}, headers={"Origin": service.base_url})
    assert done.status == 303
    assert status_of(database_url, subscription)[0] == "paused"


def test_every_form_of_every_page_carries_the_session_token(accounts: None, subscription: str, browsers: Any) -> None:
    olga = signed_in(browsers, OPERATOR)
    token = olga.csrf()
    [slug] = [
        href.rsplit("/", 1)[1]
        for href in olga.get("/console/event-types").links.values()
        if href.startswith("/console/event-types/")
    ][:1] or ["none"]
    paths = ["/console/", "/console/subscriptions", f"/console/subscriptions/{subscription}", "/console/event-types"]
    if slug != "none":
        paths.append(f"/console/event-types/{slug}")
    posting = 0
    for path in paths:
        page = olga.get(path)
        assert page.status == 200, path
        for form in page.forms:
            if form.method == "post":
                posting += 1
                assert form.fields.get("csrf") == token, (path, form.action)
    assert posting >= len(paths) + 2  # sign-out on each page, pause and verify on the subscription's


def test_a_viewer_sees_no_action_and_a_forged_post_changes_nothing(
    accounts: None, subscription: str, browsers: Any, database_url: str
) -> None:
    vera = signed_in(browsers, VIEWER)
    page = vera.get(f"/console/subscriptions/{subscription}")
    assert page.status == 200
    assert [f.buttons for f in page.forms] == [["Sign out"]]
    assert "Actions" not in page.text
    token = page.form("Sign out").fields["csrf"]
    for action in ("pause", "resume", "verify"):
        forged = vera.post(f"/console/subscriptions/{subscription}/{action}", {"csrf": token, "reason": "forged"})
        assert forged.status == 403, action
        assert "only operators may act" in forged.text
    rows(database_url, "UPDATE outbox.subscriptions SET status = 'paused', paused_reason = 'by hand' RETURNING 1")
    assert vera.post(f"/console/subscriptions/{subscription}/resume", {"csrf": token}).status == 403
    assert status_of(database_url, subscription) == ("paused", "by hand")
    assert audit(database_url) == []


def test_an_operator_pauses_and_resumes_and_the_page_shows_who_did_what_when(
    accounts: None, subscription: str, browsers: Any, database_url: str, callback: Receiver
) -> None:
    # An operator's chat relay that opted in to the operational events (issue 19 §3).
    subscribe(database_url, f"{callback.url}/ops", types=["nl.overheid.outbox.subscription-paused"])
    olga = signed_in(browsers, OPERATOR)
    path = f"/console/subscriptions/{subscription}"
    page = olga.get(path)
    assert "No one has acted on this yet" in page.text

    empty = olga.submit(page, "Pause", follow=False, reason="   ")
    assert empty.status == 400 and "Reason: say why, in 1 to 200 characters." in empty.text
    assert empty.inputs["reason"].get("aria-invalid") == "true"
    assert status_of(database_url, subscription) == ("active", None)

    paused = olga.submit(page, "Pause", reason="receiver maintenance")
    assert paused.response.url.path == path
    assert "The subscription is paused" in paused.text and "receiver maintenance (by olga)" in paused.text
    assert status_of(database_url, subscription) == ("paused", "receiver maintenance (by olga)")
    # The pause announced itself (issue 19 §3), naming the operator.
    announced = rows(
        database_url,
        "SELECT event->'data'->>'operator' FROM outbox.events WHERE event->>'type' = %s",
        "nl.overheid.outbox.subscription-paused",
    )
    assert announced == [(OPERATOR,)]
    resumed = olga.submit(paused, "Resume")
    assert "The subscription is active again" in resumed.text
    assert status_of(database_url, subscription) == ("active", None)

    verified = olga.submit(resumed, "Verify the callback")
    assert "The callback was verified" in verified.text
    assert any(r.method == "OPTIONS" for r in callback.received)

    entries = audit(database_url)
    assert [(e[0], e[1], e[2], e[3]) for e in entries] == [
        (OPERATOR, action, "subscription", subscription) for action in ("pause", "resume", "verify")
    ]
    assert entries[0][4] == "receiver maintenance (by olga)"
    # The page lists them newest first, with who, what and when (the database's time, in UTC).
    html = verified.html
    for operator, action, _, _, _, at in entries:
        when = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        assert f"<td>{when}</td><td>{operator}</td><td>{action}</td>" in html
    assert html.index("<td>verify</td>") < html.index("<td>resume</td>") < html.index("<td>pause</td>")


# ---- lockout ----


def test_an_account_is_locked_after_repeated_failures_until_the_lockout_passes(
    accounts: None, start_service: StartService, browsers: Any
) -> None:
    live = start_service(console_signin_attempts=3, console_address_attempts=1000, console_lockout=2)
    client: ConsoleClient = browsers(live.base_url)
    wrong = [client.sign_in(OPERATOR, "not-the-password-at-all") for _ in range(3)]
    assert [page.status for page in wrong] == [401, 401, 401]
    locked = client.sign_in(OPERATOR)
    assert locked.status == 401 and client.session_token is None
    # The answer does not tell a locked account from a wrong password.
    assert "Sign-in failed" in locked.text and "locked for 1 minutes" in locked.text
    # Another account from the same address is not locked.
    assert browsers(live.base_url).sign_in(VIEWER).status == 303
    time.sleep(2.5)  # the lockout (2 s) passes after the last failure
    assert client.sign_in(OPERATOR).status == 303


def test_an_address_is_locked_after_repeated_failures_on_any_accounts(
    accounts: None, start_service: StartService, browsers: Any
) -> None:
    live = start_service(console_signin_attempts=1000, console_address_attempts=4, console_lockout=2)
    client: ConsoleClient = browsers(live.base_url)
    for name in ("anna", "bert", "carl", "dirk"):  # guessing names, none of them an account
        assert client.sign_in(name, "some-guessed-password").status == 401
    assert client.sign_in(OPERATOR).status == 401
    assert browsers(live.base_url).sign_in(VIEWER).status == 401
    time.sleep(2.5)
    assert client.sign_in(OPERATOR).status == 303


# ---- headers, secrets, limits, 404 ----


def test_pages_send_a_strict_policy_and_never_show_a_secret(
    accounts: None, subscription: str, browsers: Any, database_url: str, callback: Receiver
) -> None:
    # A token in the callback's query (it cannot go with an Authorization header: a second subscription).
    queried = subscribe(database_url, f"{callback.url}/q?access_token={QUERY_TOKEN}", allow_query_token=True)
    olga = signed_in(browsers, OPERATOR)
    token = str(olga.session_token)
    [(password_hash,)] = rows(database_url, "SELECT password_hash FROM outbox.operators WHERE name = %s", OPERATOR)
    secrets = [AUTH, AUTH.split()[1], HEADER_SECRET, QUERY_TOKEN, SIGNING, token, PASSWORDS[OPERATOR], password_hash]
    slugs = [h for h in olga.get("/console/event-types").links.values() if h.startswith("/console/event-types/")]
    paths = [
        "/console/",
        "/console/subscriptions",
        f"/console/subscriptions/{subscription}",
        f"/console/subscriptions/{queried}",
        "/console/event-types",
        *slugs[:1],
        "/console/no-such-page",
    ]
    pages = [olga.get(path) for path in paths] + [browsers().get("/console/sign-in")]
    for page in pages:
        where = page.response.url.path
        assert page.status in (200, 404), where
        assert page.response.headers["content-type"].startswith("text/html"), where
        csp = csp_directives(page.response)
        assert csp["default-src"] == ["'none'"] and csp["script-src"] == ["'self'"], where
        assert csp["style-src"] == ["'self'"] and csp["frame-ancestors"] == ["'none'"], where
        assert all(source in ("'self'", "'none'") for values in csp.values() for source in values), (
            f"{where}: nothing from another origin, nothing inline: {csp}"
        )
        assert page.response.headers["x-content-type-options"] == "nosniff", where
        assert page.response.headers["x-frame-options"] == "DENY", where
        assert page.response.headers["cache-control"] == "no-store", where
        # What the policy would block is not there to begin with.
        assert all("src" in script for script in page.scripts), where
        assert page.inline == [], where
        assert all(r.startswith("/console/static/") for r in page.resources), where
        shown = page.html + json.dumps({k: v for k, v in page.response.headers.items() if k.lower() != "set-cookie"})
        assert not [s for s in secrets if s in shown], where
    static = olga.http.get("/console/static/console.css")
    assert static.status_code == 200 and static.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" in static.headers


def test_a_large_post_is_refused(accounts: None, subscription: str, browsers: Any, database_url: str) -> None:
    olga = signed_in(browsers, OPERATOR)
    big = {"csrf": olga.csrf(), "reason": "x" * 100_000}
    assert olga.post(f"/console/subscriptions/{subscription}/pause", big).status == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b"csrf=" + olga.csrf().encode() + b"&reason="
        for _ in range(100):
            yield b"y" * 1024

    chunked = olga.http.post(
        f"/console/subscriptions/{subscription}/pause",
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert chunked.status_code == 413
    assert status_of(database_url, subscription) == ("active", None)


def test_unknown_console_paths_answer_an_html_page(accounts: None, browsers: Any, service: LiveService) -> None:
    anonymous: ConsoleClient = browsers()
    for path in ("/console/no-such-page", "/console/static/no-such.css"):
        page = anonymous.get(path)
        assert page.status == 404 and page.response.headers["content-type"].startswith("text/html"), path
        assert "Page not found" in page.text
    olga = signed_in(browsers, OPERATOR)
    page = olga.get("/console/deep/no/such/page")
    assert page.status == 404 and "Page not found" in page.text and f"Signed in as {OPERATOR}" in page.text
    for missing in (
        "/console/subscriptions/not-a-uuid",
        "/console/subscriptions/" + "0" * 8 + "-0000-4000-8000-" + "0" * 12,
    ):
        page = olga.get(missing)
        assert page.status == 404 and "No such subscription" in page.text
    assert olga.get("/console/event-types/no-such-type").status == 404
    method = olga.get("/console/sign-out")
    assert method.status == 405 and method.response.headers["allow"] == "POST"
    assert method.response.headers["content-type"].startswith("text/html")
    # The API keeps its problem documents.
    api = service.anonymous.get("/api/v1/no-such-thing")
    assert api.status_code == 404 and api.headers["content-type"] == "application/problem+json"


def test_the_console_works_without_javascript(accounts: None, subscription: str, browsers: Any) -> None:
    """Links and form posts alone, each followed by its redirect, as a browser with scripts off."""
    client: ConsoleClient = browsers()
    form = client.get("/console/", follow=True)
    overview = client.submit(form, "Sign in", username=OPERATOR, password=PASSWORDS[OPERATOR])
    assert overview.response.url.path == "/console/" and "Overview" in overview.text
    listing = client.get(overview.links["Subscriptions"])
    [link] = [href for href in listing.links.values() if href.endswith(subscription)]
    page = client.get(link)
    paused = client.submit(page, "Pause", reason="no script needed")
    assert "The subscription is paused" in paused.text
    resumed = client.submit(paused, "Resume")
    assert "The subscription is active again" in resumed.text
    out = client.submit(resumed, "Sign out")
    assert out.response.url.path == "/console/sign-in" and "You are signed out" in out.text


def test_the_catalogue_marks_the_operational_types(accounts: None, browsers: Any) -> None:
    vera = signed_in(browsers, VIEWER)
    listing = vera.get("/console/event-types")
    assert listing.status == 200
    rows_of = {line.split(" ", 1)[0]: line for line in listing.text.split("nl.overheid.")[1:]}
    assert "operational (built in)" in rows_of["outbox.delivery-failed"]
    one = vera.get(listing.links["nl.overheid.outbox.subscription-paused"])
    assert "operational: written by the outbox about itself" in one.text
