"""Fixtures of the deployment tests (`make test-deploy`): the engine, the image built from the repository's
Dockerfile, and a test database that a container on the host network reaches over TCP."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

from tests.deploy.engine import VERSION, Engine, EngineMissing, base_image

IMAGE = "localhost/nlgov-outbox:deploy-test"


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    try:
        found = Engine.find()
    except EngineMissing as exc:
        pytest.exit(str(exc), returncode=1)
    yield found
    found.remove_made_images()


@pytest.fixture(scope="session")
def image_base(engine: Engine) -> str:
    return base_image(engine)


@pytest.fixture(scope="session")
def outbox_image(engine: Engine, image_base: str) -> str:
    """The image of this checkout (removed after the session)."""
    seconds = engine.build(IMAGE, image_base, build_args={"VERSION": VERSION, "REVISION": "test"})
    print(f"\nbuilt {IMAGE} on {image_base} in {seconds:.1f} s")
    return IMAGE


class _TcpToUnix:
    """127.0.0.1:PORT → a PostgreSQL that listens only on a Unix socket (the embedded pgserver), so containers
    on the host network reach it too."""

    def __init__(self, socket_path: str) -> None:
        self._path = socket_path
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closed = False
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            self._open += [client, upstream]
            try:
                upstream.connect(self._path)
            except OSError:
                self._close_pair(client, upstream)
                continue
            threading.Thread(target=self._serve, args=(client, upstream), daemon=True).start()

    def _serve(self, client: socket.socket, upstream: socket.socket) -> None:
        back = threading.Thread(target=self._pipe, args=(upstream, client), daemon=True)
        back.start()
        self._pipe(client, upstream)
        back.join()
        self._close_pair(client, upstream)

    def _close_pair(self, *pair: socket.socket) -> None:
        for sock in pair:
            sock.close()
            with contextlib.suppress(ValueError):
                self._open.remove(sock)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self._close_pair(*list(self._open))


@pytest.fixture(scope="session")
def tcp_server_url(server_url: str) -> Iterator[str]:
    """The test server's URL, over TCP on 127.0.0.1."""
    params: dict[str, Any] = conninfo.conninfo_to_dict(server_url)
    host = str(params.get("host") or "")
    if host and not host.startswith("/"):
        yield server_url
        return
    port = params.get("port") or 5432
    forwarder = _TcpToUnix(f"{host or '/var/run/postgresql'}/.s.PGSQL.{port}")
    params.update(host="127.0.0.1", port=forwarder.port)
    try:
        yield conninfo.make_conninfo(**params)
    finally:
        forwarder.close()


@pytest.fixture
def deploy_database_url(tcp_server_url: str, empty_database_url: str) -> str:
    """A database of this test's own, with no schema yet, by a TCP URL (with a password if the server has one)."""
    params: dict[str, Any] = conninfo.conninfo_to_dict(tcp_server_url)
    params["dbname"] = conninfo.conninfo_to_dict(empty_database_url)["dbname"]
    url = conninfo.make_conninfo(**params)
    with psycopg.connect(url, connect_timeout=10) as conn:  # reachable as the containers will reach it
        conn.execute("SELECT 1")
    return url
