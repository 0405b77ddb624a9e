"""The delivery rules without a database: answers → outcomes, Retry-After, backoff, content modes,
and the reference receiver over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from outbox import Subscription
from worker.daemon.settings import SettingsError, WorkerSettings
from worker.delivery.http import BATCHED, STRUCTURED, Claimed, Target, request_parts
from worker.delivery.outcome import backoff, from_error, from_status, retry_after_seconds
from worker.receiver.server import ReceiverConfig, make_app
from worker.runtime.asgi import AsgiServer

SETTINGS = WorkerSettings.load(retry_base_delay=1, retry_max_delay=30, retry_max_attempts=5, retry_after_max=120)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_is_delivered(status: int) -> None:
    assert from_status(status, None, 1, SETTINGS).kind == "delivered"


def test_410_retires_415_fails() -> None:
    assert from_status(410, None, 1, SETTINGS).kind == "retired"
    gone = from_status(415, None, 1, SETTINGS)
    assert gone.kind == "failed"
    assert "415" in (gone.reason or "")


@pytest.mark.parametrize("status", [301, 302, 400, 401, 404, 500, 502, 503])
def test_other_answers_retry_until_the_last_attempt(status: int) -> None:
    early = from_status(status, None, 2, SETTINGS)
    assert early.kind == "retry"
    assert 0 <= early.delay <= 2.0
    last = from_status(status, None, 5, SETTINGS)
    assert last.kind == "failed"
    assert "gave up after 5 attempts" in (last.reason or "")


def test_errors_without_answer_retry() -> None:
    assert from_error("timeout", 1, SETTINGS).kind == "retry"
    assert from_error("ConnectError", 5, SETTINGS).kind == "failed"


def test_429_uses_retry_after_in_both_forms_capped_and_never_exhausts() -> None:
    assert from_status(429, "7", 1, SETTINGS).delay == 7
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 55 <= from_status(429, when, 1, SETTINGS).delay <= 60
    assert from_status(429, "999999", 1, SETTINGS).delay == 120  # OUTBOX_RETRY_AFTER_MAX
    assert from_status(429, "7", 50, SETTINGS).kind == "retry", "a 429 is a wait, not a failure"
    no_header = from_status(429, None, 3, SETTINGS)
    assert no_header.kind == "retry"
    assert 0 <= no_header.delay <= 4


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0.0), ("120", 120.0), (" 5 ", 5.0), ("soon", None), ("", None), (None, None), ("-5", None)],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value) == expected


def test_retry_after_date_in_the_past_is_now() -> None:
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert retry_after_seconds(past) == 0.0


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    rng = random.Random(7)
    samples = {attempt: [backoff(attempt, SETTINGS, rng) for _ in range(500)] for attempt in (1, 2, 3, 10)}
    assert max(samples[1]) <= 1 and max(samples[2]) <= 2 and max(samples[3]) <= 4
    assert max(samples[10]) <= 30  # OUTBOX_RETRY_MAX_DELAY
    assert min(samples[10]) < 5 < max(samples[10]), "full jitter spreads over [0, cap]"


def test_settings_refuse_a_lease_not_twice_the_timeout() -> None:
    with pytest.raises(SettingsError) as caught:
        WorkerSettings.load(lease_seconds=20, request_timeout=10)
    assert caught.value.lines == [
        "OUTBOX_LEASE_SECONDS (20) must be more than twice OUTBOX_REQUEST_TIMEOUT (10) (a connect and a read "
        "may each take that long), or deliveries in flight would be taken twice"
    ]


# -- content modes ---------------------------------------------------------------------------

EVENT = {
    "specversion": "1.0",
    "id": "f3dce042-cd6e-4977-844d-05be8dce7cea",
    "source": "urn:nld:oin:00000001823288444000:systeem:BRP-component",
    "type": "nl.overheid.zaken.zaakstatus-gewijzigd",
    "subject": "123456789",
    "time": "2021-12-10T17:31:00Z",
    "nlbrpnationaliteit": "0083",
    "datacontenttype": "application/json",
    "data": {"bsn": "1234567789", "naam": "Jan Jansen"},
}


def claimed(event: dict[str, Any] = EVENT) -> Claimed:
    return Claimed(1, 1, uuid.uuid4(), json.dumps(event), uuid.uuid4())


def parts(mode: str, event: dict[str, Any] = EVENT, **options: Any) -> tuple[dict[str, str], bytes]:
    subscription = Subscription.create(
        callback_url="http://127.0.0.1/x", types=["*"], content_mode=mode, allow_insecure=True, **options
    )
    return request_parts(subscription, [claimed(event)])


def test_structured_mode_sends_the_event_as_is() -> None:
    headers, body = parts("structured")
    assert headers == {"Content-Type": STRUCTURED}
    assert json.loads(body) == EVENT
    headers, _ = parts("structured", content_type="application/cloudevents+json")
    assert headers == {"Content-Type": "application/cloudevents+json"}, "the per-subscription override"


def test_batched_mode_sends_a_json_array() -> None:
    headers, body = parts("batched")
    assert headers == {"Content-Type": BATCHED}
    assert json.loads(body) == [EVENT]
    subscription = Subscription.create(callback_url="http://127.0.0.1/x", types=["*"], content_mode="batched",
                                       allow_insecure=True)  # fmt: skip
    second = {**EVENT, "id": "second"}
    _, body = request_parts(subscription, [claimed(), claimed(second)])
    assert json.loads(body) == [EVENT, second], "one array, in claim order"


def test_binary_mode_maps_attributes_to_ce_headers() -> None:
    headers, body = parts("binary")
    assert headers["Content-Type"] == "application/json"
    assert headers["ce-id"] == EVENT["id"]
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-source"] == EVENT["source"]
    assert headers["ce-nlbrpnationaliteit"] == "0083"
    assert headers["ce-time"] == "2021-12-10T17:31:00Z"
    assert "ce-data" not in headers and "ce-datacontenttype" not in headers
    assert json.loads(body) == EVENT["data"]
    binary_data = {**{k: v for k, v in EVENT.items() if k != "data"}, "datacontenttype": "application/octet-stream"}
    binary_data["data_base64"] = base64.b64encode(b"\x00\x01raw").decode()
    headers, body = parts("binary", binary_data)
    assert (headers["Content-Type"], body) == ("application/octet-stream", b"\x00\x01raw")
    headers, _ = parts("binary", {**EVENT, "subject": "Zoë 100%"})
    assert headers["ce-subject"] == "Zo%C3%AB%20100%25", "percent-encoded as the HTTP binding says"


# -- the reference receiver ------------------------------------------------------------------------


@pytest.fixture
async def receiver_url() -> AsyncIterator[tuple[str, ReceiverConfig]]:
    config = ReceiverConfig(auth="Bearer right", quiet=True)
    server = AsgiServer(make_app(config))
    await server.start("127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.port}/hook", config
    await server.stop()


async def test_receiver_handshake(receiver_url: tuple[str, ReceiverConfig]) -> None:
    url, _ = receiver_url
    async with httpx.AsyncClient() as client:
        ok = await client.options(
            url, headers={"WebHook-Request-Origin": "outbox.example.nl", "WebHook-Request-Rate": "120"}
        )
        assert ok.status_code == 200
        assert ok.headers["WebHook-Allowed-Origin"] == "outbox.example.nl"
        assert ok.headers["WebHook-Allowed-Rate"] == "120"
        assert (await client.options(url)).status_code == 400


async def test_receiver_accepts_the_three_modes_and_refuses_the_rest(receiver_url: tuple[str, ReceiverConfig]) -> None:
    url, config = receiver_url
    async with httpx.AsyncClient() as client:
        auth = {"Authorization": "Bearer right"}
        for mode in ("structured", "batched", "binary"):
            headers, body = parts(mode)
            answer = await client.post(url, headers={**headers, **auth}, content=body)
            assert answer.status_code == 204, mode
        assert [r["mode"] for r in config.received] == ["structured", "batched", "binary"]
        assert all(r["event"]["id"] == EVENT["id"] for r in config.received)
        wrong = await client.post(
            url, headers={"Authorization": "Bearer wrong", "Content-Type": STRUCTURED}, content=b"{}"
        )
        assert wrong.status_code == 401
        xml = await client.post(url, headers={**auth, "Content-Type": "application/cloudevents+xml"}, content=b"<e/>")
        assert xml.status_code == 415
        plain = await client.post(url, headers={**auth, "Content-Type": "text/plain"}, content=b"hello")
        assert plain.status_code == 415
        broken = await client.post(url, headers={**auth, "Content-Type": STRUCTURED}, content=b'{"id": "x"}')
        assert broken.status_code == 400
        listed = (await client.get(url.rsplit("/", 1)[0] + "/events")).json()
        assert len(listed) == 3


def test_odd_retry_after_and_endless_429s_do_not_break_the_rules() -> None:
    assert retry_after_seconds("²") is None
    assert retry_after_seconds("9" * 400) is not None
    odd = from_status(429, "²", 3, SETTINGS)
    assert odd.kind == "retry"
    assert 0 <= odd.delay <= 4
    assert backoff(5000, SETTINGS) <= 30


async def test_a_broken_claim_becomes_a_recorded_error_not_an_exception() -> None:
    from worker.delivery.http import Sender

    sender = Sender(SETTINGS)
    try:
        target = Target(
            Subscription.create(callback_url="http://127.0.0.1:9/x", types=["*"], content_mode="binary",
                                allow_insecure=True), SETTINGS
        )  # fmt: skip
        broken = Claimed(1, 1, uuid.uuid4(), "{not json", uuid.uuid4())
        (result,) = await sender.deliver(target, [broken])
        assert result.outcome.kind == "retry"
        assert result.error == "internal error (JSONDecodeError)"
    finally:
        await sender.aclose()


def test_reprs_hide_every_secret() -> None:
    secrets = ["Bearer abc-very-secret", "client-secret-xyz", "zgw-secret-xyz", "whsec_" + "A" * 40]
    for options in (
        {"auth": secrets[0]},
        {"oauth2": {"tokenUrl": "https://idp/token", "clientId": "c", "clientSecret": secrets[1]}},
        {"zgw": {"clientId": "c", "secret": secrets[2]}, "signing_secrets": [secrets[3]]},
    ):
        subscription = Subscription.create(callback_url="https://x.example/h", types=["*"], **options)
        shown = repr(subscription) + repr(Target(subscription, SETTINGS)) + json.dumps(subscription.to_public_dict())
        assert not [s for s in secrets if s in shown]


async def _raw_server(answer: bytes) -> tuple[asyncio.AbstractServer, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await answer_all(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def answer_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            await reader.readexactly(length)
            writer.write(answer)
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/hook"


async def test_transport_never_takes_stray_bytes_for_the_next_answer() -> None:
    from worker.delivery.transport import WebhookTransport

    two_answers = b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"
    server, url = await _raw_server(two_answers)
    transport = WebhookTransport()
    try:
        for _ in range(3):
            answer = await transport.handle_async_request(httpx.Request("POST", url, content=b"{}"))
            assert answer.status_code == 204
    finally:
        await transport.aclose()
        await asyncio.sleep(0.05)  # let the server see the connections close
        server.close()
        await server.wait_closed()


async def test_transport_refuses_header_injection() -> None:
    from worker.delivery.transport import WebhookTransport

    transport = WebhookTransport()
    request = httpx.Request("POST", "http://127.0.0.1:9/x", headers={"Authorization": "Bearer a\r\nX-Evil: 1"})
    with pytest.raises(httpx.LocalProtocolError):
        await transport.handle_async_request(request)
