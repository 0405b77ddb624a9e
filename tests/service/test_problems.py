"""Problem `type` URIs: pages this service serves itself at /problems/{code}, absolute under OUTBOX_PUBLIC_URL."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from tests.service.live import PUBLISH, LiveService
from worker.service.problems import PAGES

SERVICE = Path(__file__).parents[2] / "worker" / "service"


def test_a_problem_type_is_a_relative_reference_to_a_page_of_the_service(service: LiveService) -> None:
    refused = service.anonymous.get("/api/v1/kanaal")
    assert refused.status_code == 401
    problem = refused.json()
    assert problem["type"] == "/problems/not_authenticated"
    # RFC 9457: a relative type resolves against the URI of the document that holds it.
    page = service.anonymous.get(str(httpx.URL(service.base_url + "/api/v1/kanaal").join(problem["type"])))
    assert page.status_code == 200  # no JWT: the same static text for everyone
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>Authentication credentials were not provided.</h1>" in page.text
    assert "401" in page.text


def test_an_unknown_problem_name_is_a_404(service: LiveService) -> None:
    for name in ("nope", "..", "invalid.html"):
        missing = service.anonymous.get(f"/problems/{name}")
        assert missing.status_code == 404, name
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["type"] == "/problems/not_found"


def test_with_a_public_url_the_type_is_absolute(start_service: Any) -> None:
    service = start_service(public_url="https://notificaties.example.nl/")
    producer = service.add_client("p", PUBLISH)
    bad = producer.post("/api/v1/cloudevents", content=b"{", headers={"Content-Type": "application/cloudevents+json"})
    assert bad.status_code == 400
    assert bad.json()["type"] == "https://notificaties.example.nl/problems/invalid"
    unsupported = producer.post("/api/v1/cloudevents", content=b"{}", headers={"Content-Type": "text/csv"})
    assert unsupported.json()["type"] == "https://notificaties.example.nl/problems/unsupported_media_type"
    missing = producer.get("/api/v1/kanaal/nope")
    assert missing.json()["type"] == "https://notificaties.example.nl/problems/not_found"
    assert service.anonymous.get("/problems/unsupported_media_type").status_code == 200


def test_every_problem_code_of_the_service_has_a_page(service: LiveService) -> None:
    source = "\n".join(path.read_text() for path in SERVICE.glob("*.py"))
    codes = set(re.findall(r'ApiProblem\(\s*(?:exc\.status_code|\d{3}),\s*"([^"]+)"', source))
    codes |= set(re.findall(r'_unauthenticated\([^;]*?,\s*"([a-z-]+)"\)', source, re.DOTALL))
    codes |= {"not_found", "method_not_allowed", "error"}  # Starlette's errors, named in problems.install
    assert {"invalid", "throttled", "jwt-expired", "too_large", "conflict"} <= codes  # the scan finds them
    assert codes <= set(PAGES), codes - set(PAGES)
    for code in PAGES:
        page = service.anonymous.get(f"/problems/{code}")
        assert page.status_code == 200, code
        assert f"<code>{code}</code>" in page.text


def test_the_pages_are_in_the_openapi_document(service: LiveService) -> None:
    document = service.anonymous.get("/api/v1/schema/openapi.json").json()
    operation = document["paths"]["/problems/{name}"]["get"]
    assert "security" not in operation
    assert set(operation["responses"]["200"]["content"]) == {"text/html"}
    assert "404" in operation["responses"]
    assert "/problems/{code}" in document["components"]["schemas"]["Problem"]["properties"]["type"]["description"]
