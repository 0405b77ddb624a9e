"""Service tests: the real application on a real port, against this test's own database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from tests.service.live import LiveService, running

StartService = Callable[..., LiveService]


@pytest.fixture
def start_service(database_url: str) -> Iterator[StartService]:
    """Starts the service with settings overridden (ServeSettings field names); stopped after the test."""
    with ExitStack() as stack:

        def start(**overrides: Any) -> LiveService:
            return stack.enter_context(running(database_url, **overrides))

        yield start


@pytest.fixture
def service(start_service: StartService) -> LiveService:
    """The service with the test defaults: http and 127.0.0.1 callbacks allowed, no request rate limit."""
    return start_service()
