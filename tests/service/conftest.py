"""Service tests: the real application on a real port, against this test's own database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from tests.service.live import LiveService, running
from tests.support import Answer, Received, Receiver

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


def agreeing(number: int, received: Received) -> Answer:
    """A webhook that agrees to the OPTIONS handshake (any origin) and takes every delivery."""
    if received.method == "OPTIONS":
        rate = received.headers.get("WebHook-Request-Rate")
        return 200, {"WebHook-Allowed-Origin": "*", **({"WebHook-Allowed-Rate": rate} if rate else {})}, 0.0
    return 204, {}, 0.0


@pytest.fixture
def callback() -> Iterator[Receiver]:
    """A receiver on 127.0.0.1 that agrees to handshakes and records what it gets."""
    with Receiver(agreeing).running() as receiver:
        yield receiver
