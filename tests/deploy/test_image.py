"""The OCI image, built from the repository's Dockerfile and run for real: a worker in a container delivers what
the host enqueued to a receiver on the host, the service answers in its container, both as a non-root user on a
read-only root filesystem, and SIGTERM (`podman stop`) ends each with exit 0 well inside the grace period."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy.engine import ROOT, VERSION, Engine
from tests.service.live import PUBLISH, token
from tests.support import Receiver, enqueue, free_port, subscribe, wait_until, zaak_event

pytestmark = pytest.mark.deploy

GRACE = 20  # seconds `podman stop` waits before SIGKILL


class Containers:
    """Containers started by one test, on the host network, each removed afterwards by name."""

    def __init__(self, engine: Engine, image: str) -> None:
        self.engine, self.image, self.names = engine, image, []  # type: ignore[var-annotated]

    def run(self, *args: str, env: dict[str, str], detach: bool = False, mounts: tuple[str, ...] = ()) -> str:
        name = f"outbox-test-{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        flags = ["--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp:rw,size=64m,mode=1777"]  # noqa: S108 (the container's /tmp)
        flags += [f"--env={key}={value}" for key, value in env.items()]
        for mount in mounts:
            flags += ["--volume", mount]
        if detach:
            self.engine.run("run", "--detach", *flags, self.image, *args)
            return name
        result = self.engine.run("run", *flags, self.image, *args, check=False)
        self.engine.remove_container(name)
        assert result.returncode == 0, f"outbox {' '.join(args)} in a container: {result.stderr[-2000:]}"
        return result.stdout

    def logs(self, name: str) -> str:
        result = self.engine.run("logs", name, check=False)
        return result.stdout + result.stderr

    def stop(self, name: str) -> tuple[int, float]:
        """SIGTERM, as `podman stop` / Kubernetes send it; returns the exit code and the seconds it took."""
        started = time.monotonic()
        self.engine.run("stop", "--time", str(GRACE), name, timeout=GRACE + 30)
        seconds = time.monotonic() - started
        code = self.engine.run("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip()
        return int(code), seconds

    def remove_all(self) -> None:
        for name in self.names:
            self.engine.remove_container(name)


@pytest.fixture
def containers(engine: Engine, outbox_image: str) -> Iterator[Containers]:
    made = Containers(engine, outbox_image)
    yield made
    made.remove_all()


def wait_http(url: str, timeout: float = 30) -> httpx.Response:
    def answered() -> httpx.Response | None:
        try:
            response = httpx.get(url, timeout=2)
        except httpx.HTTPError:
            return None
        return response if response.status_code == 200 else None

    return wait_until(answered, timeout, f"200 from {url}")  # type: ignore[no-any-return]


def test_the_image_says_its_version_runs_as_non_root_and_carries_oci_labels(
    engine: Engine, outbox_image: str, containers: Containers
) -> None:
    assert containers.run("--version", env={}).strip() == f"outbox {VERSION}"
    user = engine.run("run", "--rm", "--read-only", "--entrypoint", "id", outbox_image).stdout
    assert user.startswith("uid=10001(outbox) gid=10001(outbox)"), user
    labels = json.loads(engine.run("image", "inspect", outbox_image, "--format", "{{json .Labels}}").stdout)
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.revision"] == "test"
    assert labels["org.opencontainers.image.title"] == "nlgov-outbox"
    assert labels["org.opencontainers.image.licenses"] == "EUPL-1.2"
    entrypoint = engine.run("image", "inspect", outbox_image, "--format", "{{json .Config.Entrypoint}}").stdout
    assert json.loads(entrypoint) == ["outbox"]
    # The otel extra is in: OTEL_EXPORTER_OTLP_ENDPOINT alone turns tracing on in a deployment.
    probe = "import opentelemetry.sdk.trace, opentelemetry.exporter.otlp.proto.http.trace_exporter; print('otel')"
    otel = engine.run("run", "--rm", "--read-only", "--entrypoint", "/opt/outbox/bin/python", outbox_image, "-c", probe)
    assert otel.stdout.strip() == "otel", otel.stderr


def test_worker_and_service_in_containers_deliver_what_the_host_and_a_producer_sent(
    engine: Engine, containers: Containers, deploy_database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    db = {"OUTBOX_DATABASE_URL": deploy_database_url}
    applied = containers.run("migrate", env=db)
    assert "applied 001_initial" in applied
    assert "applied" not in containers.run("migrate", env=db)  # the second run finds everything applied

    # The sealing key from a file, as compose secrets and Kubernetes Secret volumes hand it over.
    key = subprocess.run(
        [sys.executable, "-m", "worker", "secrets", "new-key"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "secret_key").write_text(key + "\n")
    (secrets / "secret_key").chmod(0o644)
    secret_env = {"OUTBOX_SECRET_KEY_FILE": "/run/secrets/secret_key"}
    secret_mount = (f"{secrets}:/run/secrets:ro,z",)

    client_secret = "producer-secret-" + uuid.uuid4().hex
    containers.run(
        "clients",
        "add",
        "producer",
        "--scope",
        PUBLISH,
        "--secret",
        client_secret,
        env={**db, **secret_env},
        mounts=secret_mount,
    )
    subscribe(deploy_database_url, receiver.url)

    metrics_port, serve_port = free_port(), free_port()
    worker = containers.run(
        "run",
        "--metrics-port",
        str(metrics_port),
        env={
            **db,
            **secret_env,
            "OUTBOX_ALLOWED_NETWORKS": "127.0.0.0/8",
            "OUTBOX_POLL_INTERVAL": "0.2",
            "OUTBOX_SHUTDOWN_GRACE": "5",
        },
        detach=True,
        mounts=secret_mount,
    )
    service = containers.run(
        "serve", env={**db, **secret_env, "OUTBOX_PORT": str(serve_port)}, detach=True, mounts=secret_mount
    )
    wait_http(f"http://127.0.0.1:{metrics_port}/readyz")
    base = f"http://127.0.0.1:{serve_port}"
    assert wait_http(f"{base}/readyz").status_code == 200
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200

    # One event from a host's transaction, one from a producer over HTTP to the containerised service.
    subject = str(uuid.uuid4())
    enqueue(deploy_database_url, [zaak_event(subject, 1)])
    produced = zaak_event(subject, 2).to_dict()
    refused = httpx.post(
        f"{base}/api/v1/cloudevents",
        json=produced,
        timeout=10,
        headers={"Content-Type": "application/cloudevents+json"},
    )
    assert refused.status_code == 401
    answer = httpx.post(
        f"{base}/api/v1/cloudevents",
        content=json.dumps(produced),
        timeout=10,
        headers={
            "Content-Type": "application/cloudevents+json",
            "Authorization": f"Bearer {token('producer', client_secret)}",
        },
    )
    assert answer.status_code in (201, 202), answer.text
    wait_until(lambda: len(receiver.events()) >= 2, 30, "both events at the receiver")
    got = sorted(receiver.events(), key=lambda e: e["data"]["n"])
    assert [e["data"]["n"] for e in got] == [1, 2]
    assert {e["subject"] for e in got} == {subject}

    # Inside: not root, and nothing can be written outside the tmpfs.
    for name in (worker, service):
        assert engine.run("exec", name, "id", "-u").stdout.strip() == "10001"
        denied = engine.run("exec", name, "sh", "-c", "touch /opt/outbox/x", check=False)
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    secret_in_logs = containers.logs(worker) + containers.logs(service)
    assert key not in secret_in_logs and client_secret not in secret_in_logs

    for name in (worker, service):
        code, seconds = containers.stop(name)
        assert code == 0, containers.logs(name)
        assert seconds < GRACE / 2, f"{name} took {seconds:.1f} s to stop"
        print(f"{name}: SIGTERM → exit 0 in {seconds:.2f} s")
    assert '"worker stopped"' in containers.logs(worker)


def test_a_bad_setting_stops_the_container_with_one_line(containers: Containers, engine: Engine) -> None:
    name = f"outbox-test-{uuid.uuid4().hex[:10]}"
    containers.names.append(name)
    result = engine.run(
        "run",
        "--name",
        name,
        "--read-only",
        "--env=OUTBOX_SECRET_KEY_FILE=/run/secrets/missing",
        containers.image,
        "run",
        check=False,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["outbox: OUTBOX_SECRET_KEY_FILE: cannot read /run/secrets/missing (No such file or directory)"]


def test_the_image_builds_without_the_ca_secret_from_a_mirror(engine: Engine, image_base: str, tmp_path: Path) -> None:
    """The CA build secret is optional: a build without it, whose pip reads a plain-HTTP mirror on 127.0.0.1 (what
    PIP_INDEX_URL/PIP_FIND_LINKS are for), makes a working image too."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--dest",
            str(wheels),
            ".[otel]",
            "hatchling",
            "pip",
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
        timeout=600,
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(wheels))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tag = "localhost/nlgov-outbox:deploy-test-mirror"
    try:
        seconds = engine.build(
            tag,
            image_base,
            ca_secret=False,
            build_args={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": f"http://127.0.0.1:{server.server_address[1]}/"},
        )
    finally:
        server.shutdown()
        server.server_close()
    print(f"\nbuilt {tag} without the CA secret in {seconds:.1f} s")
    assert engine.run("run", "--rm", "--read-only", tag, "--version").stdout.strip() == f"outbox {VERSION}"
    history = engine.run("history", "--no-trunc", tag).stdout
    assert "secrets" not in history and "ca-certificates.crt" not in history
    engine.run("rmi", "--force", tag, check=False)
    engine.made_images.remove(tag)
