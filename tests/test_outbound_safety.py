"""Outbound safety against real servers on 127.0.0.1: the address policy at connect time (DNS
rebinding included), the 64 KiB answer cap, per-subscription TLS (custom CA, mTLS) and its pool."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import ssl
import threading
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from typing import Any

import httpx
import orjson
import pytest
import trustme
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from outbox import Subscription
from worker.daemon.settings import SettingsError, WorkerSettings
from worker.delivery import tls as tls_module
from worker.delivery.handshake import HandshakeRefused, handshake
from worker.delivery.http import Claimed, Sender, Target
from worker.delivery.safety import AddressPolicy, DestinationRefused, parse_networks, policy_from_environment
from worker.delivery.tls import check_pem, tls_context
from worker.delivery.transport import MAX_ANSWER, TLS_EXTENSION, WebhookTransport
from worker.runtime.asgi import AsgiServer

LOOPBACK = AddressPolicy([ip_network("127.0.0.0/8")])
NOWHERE = AddressPolicy()  # no allowed networks: only public addresses
NAME = "hooks.gemeente.test"  # .test never resolves in real DNS: only our resolvers answer it
REFUSED_LOOPBACK = "refused: callback address 127.0.0.1 is loopback; allow it with OUTBOX_ALLOWED_NETWORKS"


# -- the policy ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.10.1", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("100.127.255.254", "CGNAT"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("192.0.0.192", "cloud metadata"),
        ("168.63.129.16", "cloud metadata"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("192.0.2.1", "documentation"),
        ("2001:db8::1", "documentation"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::127.0.0.1", "reserved"),  # the deprecated IPv4-compatible form
        # IPv4 inside IPv6 is judged by the IPv4 address
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),  # NAT64 of 169.254.169.254
        ("64:ff9b::7f00:1", "loopback"),
        ("2002:c0a8:101::1", "private"),  # 6to4 of 192.168.1.1
    ],
)
def test_the_policy_refuses_what_is_not_public(address: str, kind: str) -> None:
    assert NOWHERE.refusal(address) == kind


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "93.184.215.14",
        "172.32.0.1",
        "100.128.0.1",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
    ],
)
def test_the_policy_lets_public_addresses_through(address: str) -> None:
    assert NOWHERE.refusal(address) is None


def test_allowed_networks_let_their_addresses_through() -> None:
    policy = AddressPolicy(parse_networks("10.20.0.0/16, 127.0.0.1, ::1/128"))
    assert policy.refusal("10.20.3.4") is None
    assert policy.refusal("10.21.3.4") == "private"
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("127.0.0.2") == "loopback"
    assert policy.refusal("::1") is None
    assert policy.refusal("::ffff:10.20.3.4") is None  # the mapped form of an allowed address


def test_a_metadata_endpoint_needs_an_exact_entry() -> None:
    broad = AddressPolicy(parse_networks("169.254.0.0/16,0.0.0.0/0"))
    assert broad.refusal("169.254.1.1") is None
    assert broad.refusal("169.254.169.254") == "cloud metadata"
    assert AddressPolicy(parse_networks("169.254.169.254")).refusal("169.254.169.254") is None


def test_allowed_networks_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WorkerSettings.load().allowed_networks == ()
    monkeypatch.setenv("OUTBOX_ALLOWED_NETWORKS", " 127.0.0.0/8, ::1/128,")
    assert WorkerSettings.load().allowed_networks == (ip_network("127.0.0.0/8"), ip_network("::1/128"))
    monkeypatch.setenv("OUTBOX_ALLOWED_NETWORKS", "127.0.0.0/8,intranet")
    with pytest.raises(SettingsError) as raised:
        WorkerSettings.load()
    assert raised.value.lines == [
        "OUTBOX_ALLOWED_NETWORKS: 'intranet' is not an IP network (CIDR) or address (got '127.0.0.0/8,intranet')"
    ]
    with pytest.raises(SettingsError) as raised:
        WorkerSettings.load(allowed_networks="10.1.2.3/8")
    assert raised.value.lines == [
        "OUTBOX_ALLOWED_NETWORKS: '10.1.2.3/8' has host bits set (did you mean 10.0.0.0/8?) (got '10.1.2.3/8')"
    ]
    with pytest.raises(ValueError, match=r"^OUTBOX_ALLOWED_NETWORKS: '10\.0\.0\.0/33' is not an IP network"):
        policy_from_environment({"OUTBOX_ALLOWED_NETWORKS": "10.0.0.0/33"})
    assert policy_from_environment({}).allowed == ()


# -- real servers ----------------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    host: str
    peer: tuple[str, int]
    client_subject: str | None


@dataclass
class Server:
    port: int
    seen: list[Seen] = field(default_factory=list)


@contextlib.asynccontextmanager
async def serving(context: ssl.SSLContext | None = None, status: int = 204) -> AsyncIterator[Server]:
    """A server on 127.0.0.1 in this test's loop that records who asked what."""
    server = Server(0)

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        name = scope.get("extensions", {}).get("tls", {}).get("client_cert_name") or ""
        subject = next((part[3:] for part in name.split(",") if part.startswith("CN=")), None)
        query = scope["query_string"].decode()
        path_qs = scope["path"] + (f"?{query}" if query else "")
        client = scope["client"]
        server.seen.append(Seen(request.method, path_qs, request.headers.get("Host", ""), client, subject))
        await Response(status_code=status, headers={"WebHook-Allowed-Origin": "*"})(scope, receive, send)

    http = AsgiServer(handle, ssl_context=context)
    await http.start("127.0.0.1", 0)
    server.port = http.port or 0
    try:
        yield server
    finally:
        await http.stop()


class Resolver:
    """A DNS stand-in: answers[n] is the answer to the n-th question (the last one repeats)."""

    def __init__(self, *answers: Sequence[str]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return list(self.answers[min(len(self.asked), len(self.answers)) - 1])


async def post(transport: WebhookTransport, url: str, context: ssl.SSLContext | None = None) -> httpx.Response:
    extensions: dict[str, Any] = {"timeout": httpx.Timeout(5.0).as_dict()}
    if context is not None:
        extensions[TLS_EXTENSION] = context
    request = httpx.Request("POST", url, content=b"{}", extensions=extensions)
    return await transport.handle_async_request(request)


# -- the policy at connect time --------------------------------------------------------------------


async def test_loopback_is_refused_unless_allowed() -> None:
    async with serving() as server:
        url = f"http://127.0.0.1:{server.port}/hook/secret-path?token=s3cret"
        refusing = WebhookTransport(policy=NOWHERE)
        with pytest.raises(DestinationRefused) as raised:
            await post(refusing, url)
        assert str(raised.value) == REFUSED_LOOPBACK
        assert "secret" not in str(raised.value)
        assert isinstance(raised.value, httpx.ConnectError)  # the worker retries it like any connect error
        assert server.seen == []

        allowing = WebhookTransport(policy=LOOPBACK)
        try:
            assert (await post(allowing, url)).status_code == 204
        finally:
            await allowing.aclose()
        assert [s.path for s in server.seen] == ["/hook/secret-path?token=s3cret"]


async def test_a_private_address_behind_a_public_name_is_refused() -> None:
    async with serving() as server:
        transport = WebhookTransport(policy=NOWHERE, resolver=Resolver(["127.0.0.1"]))
        with pytest.raises(DestinationRefused) as raised:
            await post(transport, f"http://{NAME}:{server.port}/hook")
        assert str(raised.value) == (
            f"refused: callback host {NAME} resolves to 127.0.0.1 (loopback); allow it with OUTBOX_ALLOWED_NETWORKS"
        )
        assert server.seen == []


async def test_one_refused_address_among_public_ones_refuses_the_host() -> None:
    # 93.184.215.14 is public: were it tried, this would be a connect error or a timeout instead.
    async with serving() as server:
        transport = WebhookTransport(policy=NOWHERE, resolver=Resolver(["93.184.215.14", "::ffff:127.0.0.1"]))
        with pytest.raises(DestinationRefused, match=r"resolves to ::ffff:127\.0\.0\.1 \(loopback\)"):
            await post(transport, f"http://{NAME}:{server.port}/hook")
        assert server.seen == []


async def test_dns_rebinding_cannot_swap_the_checked_address() -> None:
    """The first answer is allowed (127.0.0.1 stands in for a public address), the next is not.

    The first request only succeeds if the transport connects to the address it checked: nothing
    else resolves the name. The second connection asks again and is refused before connecting.
    """
    only_first = AddressPolicy([ip_network("127.0.0.1/32")])
    resolver = Resolver(["127.0.0.1"], ["127.0.0.2"])
    async with serving() as server:
        transport = WebhookTransport(policy=only_first, resolver=resolver)
        url = f"http://{NAME}:{server.port}/hook"
        assert (await post(transport, url)).status_code == 204
        assert [s.host for s in server.seen] == [f"{NAME}:{server.port}"]  # the Host header keeps the name
        assert (await post(transport, url)).status_code == 204  # a kept-alive connection: no new question
        assert resolver.asked == [NAME]

        await transport.aclose()  # the next request needs a new connection, so a new answer
        with pytest.raises(DestinationRefused, match=r"resolves to 127\.0\.0\.2 \(loopback\)"):
            await post(transport, url)
        assert resolver.asked == [NAME, NAME]
        assert len(server.seen) == 2


async def test_the_sender_records_a_refusal_without_the_url() -> None:
    event = orjson.dumps({"specversion": "1.0", "id": "1", "source": "urn:test", "type": "t"}).decode()
    claims = [Claimed(id=1, attempts=1, subscription_id=uuid.uuid4(), event=event, token=uuid.uuid4())]
    async with serving() as server:
        subscription = Subscription.create(
            callback_url=f"http://127.0.0.1:{server.port}/hook?token=s3cret",
            types=["*"],
            allow_insecure=True,
            auth="Bearer s3cret",
        )
        for allowed, expected in (("", (None, REFUSED_LOOPBACK, "retry")), ("127.0.0.0/8", (204, None, "delivered"))):
            settings = WorkerSettings.load(allowed_networks=allowed)
            sender = Sender(settings)
            try:
                [result] = await sender.deliver(Target(subscription, settings), claims)
            finally:
                await sender.aclose()
            assert (result.status_code, result.error, result.outcome.kind) == expected
    assert len(server.seen) == 1  # only the allowed attempt arrived


# -- the answer cap --------------------------------------------------------------------------------


async def test_an_answer_is_read_up_to_64_kib_and_its_connection_closed() -> None:
    total = 1024 * 1024
    chunk = b"x" * (16 * 1024)
    written: list[int] = []
    cut_off = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        sent = 0
        try:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
            while sent < total:  # slowly, so the client's close is seen long before the end
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
                await asyncio.sleep(0.005)
        except ConnectionError:
            cut_off.set()
        finally:
            written.append(sent)
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = WebhookTransport(policy=LOOPBACK, max_body=total)  # keeps what it reads, up to the cap
    try:
        answer = await post(transport, f"http://127.0.0.1:{port}/hook")
        assert answer.status_code == 200
        assert len(answer.content) == MAX_ANSWER == 64 * 1024
        await asyncio.wait_for(cut_off.wait(), 5)
        assert written[0] < total / 2
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()


# -- TLS -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def client_ca() -> trustme.CA:
    return trustme.CA()


def pem(blob: trustme.Blob) -> str:
    return blob.bytes().decode()


def server_context(server_ca: trustme.CA, client_ca: trustme.CA | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ca.issue_cert(NAME).configure_cert(context)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        client_ca.configure_trust(context)
    return context


def client_pems(client_ca: trustme.CA, name: str) -> tuple[str, str]:
    leaf = client_ca.issue_cert(f"{name}.gemeente.test", common_name=name)
    return pem(leaf.cert_chain_pems[0]), pem(leaf.private_key_pem)


def tls_transport() -> WebhookTransport:
    return WebhookTransport(policy=LOOPBACK, resolver=Resolver(["127.0.0.1"]))


async def test_an_unknown_ca_is_refused_and_a_custom_bundle_accepted(server_ca: trustme.CA) -> None:
    async with serving(server_context(server_ca)) as server:
        url = f"https://{NAME}:{server.port}/hook"
        transport = tls_transport()
        try:
            with pytest.raises(httpx.ConnectError, match="^TLS certificate not accepted: unable to get local issuer"):
                await post(transport, url)  # Mozilla's bundle does not know this CA
            assert server.seen == []

            answer = await post(transport, url, tls_context(pem(server_ca.cert_pem)))
            assert answer.status_code == 204
            assert [s.host for s in server.seen] == [f"{NAME}:{server.port}"]
        finally:
            await transport.aclose()


async def test_the_certificate_is_checked_against_the_name_not_the_address(server_ca: trustme.CA) -> None:
    async with serving(server_context(server_ca)) as server:
        transport = tls_transport()
        try:
            with pytest.raises(httpx.ConnectError, match="^TLS certificate not accepted: Hostname mismatch"):
                await post(
                    transport, f"https://other.gemeente.test:{server.port}/", tls_context(pem(server_ca.cert_pem))
                )
        finally:
            await transport.aclose()
        assert server.seen == []


def test_a_custom_ca_bundle_replaces_mozillas(server_ca: trustme.CA) -> None:
    assert len(tls_context().get_ca_certs()) > 100  # certifi's
    context = tls_context(pem(server_ca.cert_pem))
    assert len(context.get_ca_certs()) == 1
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)


async def test_mutual_tls(server_ca: trustme.CA, client_ca: trustme.CA) -> None:
    cert, key = client_pems(client_ca, "outbox-a")
    async with serving(server_context(server_ca, client_ca)) as server:
        url = f"https://{NAME}:{server.port}/hook"
        transport = tls_transport()
        try:
            # asyncio's TLS server drops the connection without sending its alert: see the next test
            with pytest.raises(httpx.TransportError):
                await post(transport, url, tls_context(pem(server_ca.cert_pem)))
            assert server.seen == []

            answer = await post(transport, url, tls_context(pem(server_ca.cert_pem), cert, key))
            assert answer.status_code == 204
            assert [s.client_subject for s in server.seen] == ["outbox-a"]
        finally:
            await transport.aclose()


async def test_a_refused_client_certificate_is_named(server_ca: trustme.CA, client_ca: trustme.CA) -> None:
    """A server that sends TLS 1.3's alert (as OpenSSL-based servers do) is quoted. With TLS 1.3 the
    alert comes after the client's handshake is done: when the close overtakes it, all the client can
    say is that the server closed the connection (both are seen here)."""
    context = server_context(server_ca, client_ca)
    listener = socket.create_server(("127.0.0.1", 0))
    server_saw: list[str] = []

    def serve() -> None:
        raw, _ = listener.accept()
        with raw, contextlib.suppress(OSError):
            try:
                with context.wrap_socket(raw, server_side=True) as tls:
                    server_saw.append(tls.recv(100).decode())
            except ssl.SSLError as exc:
                server_saw.append(exc.reason or "")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    transport = tls_transport()
    try:
        url = f"https://{NAME}:{listener.getsockname()[1]}/hook"
        with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError)) as raised:
            await post(transport, url, tls_context(pem(server_ca.cert_pem)))
        assert str(raised.value) in (
            "TLS refused by the server: TLSV13_ALERT_CERTIFICATE_REQUIRED",
            "the server closed the connection",
        )
    finally:
        await transport.aclose()
        await asyncio.to_thread(thread.join, 5)
        listener.close()
    assert server_saw == ["PEER_DID_NOT_RETURN_A_CERTIFICATE"]


async def test_different_tls_contexts_never_share_a_connection(server_ca: trustme.CA, client_ca: trustme.CA) -> None:
    ca = pem(server_ca.cert_pem)
    first = tls_context(ca, *client_pems(client_ca, "outbox-a"))
    second = tls_context(ca, *client_pems(client_ca, "outbox-b"))
    async with serving(server_context(server_ca, client_ca)) as server:
        url = f"https://{NAME}:{server.port}/hook"
        transport = tls_transport()
        try:
            for context in (first, second, first, second):
                assert (await post(transport, url, context)).status_code == 204
        finally:
            await transport.aclose()
    subjects = [s.client_subject for s in server.seen]
    assert subjects == ["outbox-a", "outbox-b", "outbox-a", "outbox-b"]
    peers = [s.peer for s in server.seen]
    assert peers[0] == peers[2]  # each context kept its own connection alive ...
    assert peers[1] == peers[3]
    assert peers[0] != peers[1]  # ... and never lent it to the other


async def test_the_handshake_meets_the_same_rules(server_ca: trustme.CA) -> None:
    async with serving(server_context(server_ca)) as server:
        url = f"https://{NAME}:{server.port}/hook"
        resolver = Resolver(["127.0.0.1"])
        with pytest.raises(HandshakeRefused) as raised:
            await asyncio.to_thread(handshake, url, "outbox.gemeente.nl", policy=NOWHERE, resolver=resolver)
        assert str(raised.value) == (
            f"refused: callback host {NAME} resolves to 127.0.0.1 (loopback); allow it with OUTBOX_ALLOWED_NETWORKS"
        )
        with pytest.raises(HandshakeRefused) as raised:
            await asyncio.to_thread(handshake, url, "outbox.gemeente.nl", policy=LOOPBACK, resolver=resolver)
        assert str(raised.value).startswith(
            "the OPTIONS handshake could not reach the target (ConnectError): TLS certificate not accepted"
        )
        assert server.seen == []

        context = tls_context(pem(server_ca.cert_pem))
        agreement = await asyncio.to_thread(
            handshake, url, "outbox.gemeente.nl", policy=LOOPBACK, tls=context, resolver=resolver
        )
        assert agreement.allowed_origin == "*"
        assert [(s.method, s.path) for s in server.seen] == [("OPTIONS", "/hook")]


async def test_the_sync_handshake_also_works_inside_a_running_loop() -> None:
    async with serving() as server:
        url = f"http://127.0.0.1:{server.port}/hook"
        with pytest.raises(HandshakeRefused, match="^refused: callback address 127.0.0.1 is loopback"):
            handshake(url, "outbox.gemeente.nl", policy=NOWHERE)  # refused before any I/O with the server
        assert server.seen == []


# -- PEM checks ------------------------------------------------------------------------------------


def test_bad_pem_is_named_by_field(server_ca: trustme.CA, client_ca: trustme.CA) -> None:
    cert, key = client_pems(client_ca, "outbox-a")
    _, other_key = client_pems(client_ca, "outbox-b")
    cases: list[tuple[tuple[str | None, str | None, str | None], str]] = [
        (("not a certificate", None, None), "ca_bundle: not PEM certificates"),
        ((key, None, None), "ca_bundle: holds a private key; give only the CA certificates"),
        ((None, "garbage", key), "client_cert: not PEM certificates"),
        ((None, cert + key, key), "client_cert: holds a private key; give the key as client_key"),
        ((None, cert, "garbage"), "client_key: not a PEM private key"),
        ((None, cert, cert), "client_key: not a PEM private key"),
        ((None, cert, other_key), "client_key: does not belong to client_cert"),
        ((None, cert, None), "client_key: missing; client_cert needs its private key"),
        ((None, None, key), "client_key: given without client_cert"),
    ]
    for fields, message in cases:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}") as raised:
            tls_context(*fields)
        for secret in (key.splitlines()[1], other_key.splitlines()[1], "garbage"):
            assert secret not in str(raised.value)  # the PEM text is never repeated


def test_check_pem(server_ca: trustme.CA, client_ca: trustme.CA) -> None:
    cert, key = client_pems(client_ca, "outbox-a")
    assert check_pem("ca_bundle", pem(server_ca.cert_pem)) is None
    assert check_pem("client_cert", cert) is None
    assert check_pem("client_key", key) is None
    assert check_pem("ca_bundle", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n") is not None
    encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
    assert check_pem("client_key", encrypted) == (
        "client_key: is protected by a passphrase; give the key without one (it is stored encrypted)"
    )
    expired = client_ca.issue_cert(
        "old.gemeente.test",
        not_before=datetime.now(UTC) - timedelta(days=30),
        not_after=datetime.now(UTC) - timedelta(days=1),
    )
    old = pem(expired.cert_chain_pems[0])
    assert check_pem("client_cert", old) == f"client_cert: expired on {datetime.now(UTC) - timedelta(days=1):%Y-%m-%d}"
    with pytest.raises(ValueError, match="unknown TLS field"):
        check_pem("ca_cert", old)


def test_contexts_are_built_once_per_configuration(server_ca: trustme.CA, client_ca: trustme.CA) -> None:
    cert, key = client_pems(client_ca, "outbox-a")
    ca = pem(server_ca.cert_pem)
    assert tls_context(ca, cert, key) is tls_context(ca, cert, key)
    assert tls_context(ca) is tls_context(ca, "", "  ")  # blank is not given
    assert tls_context(ca) is not tls_context(ca, cert, key)
    assert tls_context(ca) is not tls_context()


def test_the_client_key_file_is_private_and_removed(monkeypatch: pytest.MonkeyPatch, client_ca: trustme.CA) -> None:
    cert, key = client_pems(client_ca, "outbox-c")
    written: list[tuple[str, int, int]] = []
    original = tls_module._write_private

    def spy(path: str, text: str) -> None:
        original(path, text)
        folder_mode = os.stat(os.path.dirname(path)).st_mode & 0o777
        written.append((path, os.stat(path).st_mode & 0o777, folder_mode))

    monkeypatch.setattr(tls_module, "_write_private", spy)
    tls_module.clear_cache()
    tls_context(None, cert, key)
    assert [(os.path.basename(p), mode, folder) for p, mode, folder in written] == [
        ("cert.pem", 0o600, 0o700),
        ("key.pem", 0o600, 0o700),
    ]
    assert not any(os.path.exists(os.path.dirname(p)) for p, _, _ in written)
