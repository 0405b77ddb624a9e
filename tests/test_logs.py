"""What log lines may say about a URL: never its credentials or query."""

from __future__ import annotations

import pytest

from worker.runtime.logs import redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:secret@hooks.example/path?token=abc", "https://hooks.example/path"),
        ("https://hooks.example:8443/cb", "https://hooks.example:8443/cb"),
        (
            "postgresql://outbox:pw@db1:5432,db2:5432/app?target_session_attrs=read-write",
            "postgresql://db1:5432,db2:5432/app",
        ),
        ("http://[::1]:9000/x", "http://[::1]:9000/x"),
        ("https://[::1/x", "<unparseable url>"),
    ],
)
def test_redact_drops_user_info_and_query_and_keeps_the_hosts(url: str, shown: str) -> None:
    assert redact(url) == shown
