"""The OpenAPI document: valid OpenAPI 3.1, complete, served as JSON and YAML, and true of the live service
(schemathesis generates requests for every operation and checks every answer against the document)."""

from __future__ import annotations

from typing import Any

import hypothesis
import schemathesis
import yaml
from hypothesis import HealthCheck, given
from openapi_spec_validator import validate
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.service.live import ADMIN, CONSUME, PUBLISH, LiveService

SCHEMA_PATH = "/api/v1/schema/openapi.json"
METHODS = ("get", "put", "post", "delete", "patch")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES = 25  # per operation and generation mode: the whole run stays well under a minute


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, item[method]) for path, item in document["paths"].items() for method in METHODS if method in item
    ]


def test_the_document_is_valid_openapi_3_1_and_the_yaml_is_the_same(service: LiveService) -> None:
    response = service.anonymous.get(SCHEMA_PATH)
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1.")
    validate(document)  # raises OpenAPIValidationError with the first fault

    as_yaml = service.anonymous.get("/api/v1/schema/openapi.yaml")
    assert as_yaml.status_code == 200
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.text) == document


def test_every_operation_needs_the_jwt_and_declares_its_problem_answers(service: LiveService) -> None:
    document = service.anonymous.get(SCHEMA_PATH).json()
    assert document["components"]["securitySchemes"]["JWT-Claims"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": document["components"]["securitySchemes"]["JWT-Claims"]["description"],
    }
    operations = _operations(document)
    paths = {path for path, _, _ in operations}
    assert {"/api/v1/cloudevents", "/api/v1/event-types", "/api/v1/event-types/{slug}"} <= paths
    assert not any(path.startswith(("/healthz", "/readyz")) for path in paths)
    assert ("/problems/{name}", "get") in {(path, method) for path, method, _ in operations}
    for path, method, operation in operations:
        where = f"{method.upper()} {path}"
        if path == "/problems/{name}":  # the problem types' static pages: for everyone (test_problems.py)
            assert "security" not in operation, where
            continue
        if path == "/hooks/{endpoint}":  # external systems: verified by the consumer's own method, not a JWT
            assert "security" not in operation, where
            assert {"202", "401", "404", "413", "422", "429", "503"} <= set(operation["responses"]), where
            continue
        assert operation["security"] == [{"JWT-Claims": []}], where
        answers = set(operation["responses"])
        assert {"401", "403", "429"} <= answers, where
        # Validation errors are answered 400; a 422 only where a kept webhook request is replayed and fails again.
        assert "422" not in answers or path == "/api/v1/consumers/{id}/failures/{failureId}/replay", where
        if operation.get("parameters") or operation.get("requestBody"):
            assert "400" in answers, where
        if "{" in path:
            assert "404" in answers, where
        if "requestBody" in operation:
            assert {"413", "415"} <= answers, where
        for status, answer in operation["responses"].items():
            if status.startswith(("4", "5")):
                assert set(answer["content"]) == {"application/problem+json"}, where
    assert "HTTPValidationError" not in document["components"]["schemas"]


PROTOCOL_ERROR = "Invalid HTTP request received."


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(service: LiveService) -> None:
    caller = service.add_client("alles", PUBLISH, CONSUME, ADMIN)
    # Something for the reads, changes and deletes to find besides what the generated POSTs register.
    for slug in ("x", "zaak-gekoppeld"):
        created = caller.post("/api/v1/event-types", json={"name": slug, "slug": slug, "type": f"nl.{slug}"})
        assert created.status_code == 201, created.text
    schema = schemathesis.openapi.from_url(service.base_url + SCHEMA_PATH)
    failures: list[str] = []
    operations = 0
    calls: list[tuple[str, str, int]] = []

    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: Case) -> None:
                response = case.call(base_url=service.base_url, headers=caller.headers())
                calls.append((case.method.upper(), case.path, response.status_code))
                if response.status_code == 400 and response.text == PROTOCOL_ERROR:
                    # Negative mode also breaks HTTP itself (e.g. a Transfer-Encoding of "<AmX"): uvicorn's
                    # parser answers before any application sees the request, so there is nothing of ours
                    # to check.
                    return
                case.validate_response(response, checks=CHECKS, headers=caller.headers())

            try:
                check()
            except Exception as exc:  # a check's failure: collected, so one run reports every operation
                failures.append(f"{operation.method.upper()} {operation.path} ({mode}): {exc}")

    assert operations >= 7
    called = {(method, path) for method, path, _ in calls}
    assert len(called) == operations  # every operation was really called, not only generated
    assert {status for _, _, status in calls} >= {200, 201, 400, 404}
    assert not failures, "\n\n".join(failures)
