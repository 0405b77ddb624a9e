"""deploy/compose.yaml, run by podman-compose: migrate once, then the worker and the service, their health
checks, secrets from files. The override only swaps the bundled PostgreSQL for the test's own server (a stub
service that is healthy at once) and puts the outbox services on the host network to reach it; the outbox
services' own definitions run unchanged."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from tests.deploy.engine import ROOT, Engine
from tests.deploy.test_image import wait_http
from tests.support import Receiver, enqueue, free_port, subscribe, wait_until, zaak_event

pytestmark = pytest.mark.deploy

COMPOSE = ROOT / "deploy" / "compose.yaml"


def podman_compose() -> list[str]:
    found = shutil.which("podman-compose", path=str(Path(sys.executable).parent)) or shutil.which("podman-compose")
    if found is None:
        pytest.fail("podman-compose is missing: pip install 'podman-compose>=1.2' (the dev extras have it)")
    return [found]


def test_compose_up_migrates_then_runs_worker_and_service(
    engine: Engine, outbox_image: str, deploy_database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    if engine.name != "podman":
        pytest.skip("this test drives podman-compose")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    key = subprocess.run(
        [sys.executable, "-m", "worker", "secrets", "new-key"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    for name, value in {"database_url": deploy_database_url, "secret_key": key, "postgres_password": "unused"}.items():
        (secrets / name).write_text(value + "\n")
        (secrets / name).chmod(0o644)
    serve_port, metrics_port = free_port(), free_port()
    # The compose file as a user has it, with the bundled PostgreSQL swapped for a stub that is healthy at once
    # (the test's own server stands in), the outbox services on the host network to reach that server, and
    # free ports. (podman-compose extends lists when merging an override file, so the test edits a copy.)
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    services["postgres"] = {
        "image": outbox_image,
        "entrypoint": ["sleep"],
        "command": ["infinity"],
        "healthcheck": {"test": ["CMD", "true"], "interval": "1s", "retries": 1},
    }
    for name in ("postgres", "migrate", "run", "serve"):
        services[name]["network_mode"] = "host"
    # podman 4.3 (Debian 12) fails on a depends_on chain ("depends on container … not found in input list"):
    # the test starts the services in the order depends_on gives, and checks that order's outcome itself.
    order = {name: list(services[name].pop("depends_on", {})) for name in ("migrate", "run", "serve")}
    assert order == {"migrate": ["postgres"], "run": ["postgres", "migrate"], "serve": ["postgres", "migrate"]}
    services["serve"].pop("ports")
    services["serve"]["environment"]["OUTBOX_PORT"] = str(serve_port)
    services["run"]["environment"].update(
        OUTBOX_METRICS_PORT=str(metrics_port), OUTBOX_ALLOWED_NETWORKS="127.0.0.0/8", OUTBOX_POLL_INTERVAL="0.2"
    )
    spec["secrets"] = {name: {"file": str(secrets / name)} for name in spec["secrets"]}
    compose_file = tmp_path / "compose.yaml"
    compose_file.write_text(yaml.safe_dump(spec))
    project = f"outboxtest{uuid.uuid4().hex[:8]}"
    command = [*podman_compose(), "--in-pod", "false", "-p", project, "-f", str(compose_file)]
    env = {"OUTBOX_IMAGE": outbox_image, "PATH": "/usr/local/bin:/usr/bin:/bin"}
    env = {**os.environ, **env}
    try:
        for step in (["up", "-d", "postgres"], ["up", "migrate"], ["up", "-d", "run", "serve"]):
            up = subprocess.run([*command, *step], capture_output=True, text=True, timeout=300, env=env, check=False)
            assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        wait_http(f"http://127.0.0.1:{serve_port}/readyz", 60)
        wait_http(f"http://127.0.0.1:{metrics_port}/readyz", 60)
        assert httpx.get(f"http://127.0.0.1:{serve_port}/healthz", timeout=5).status_code == 200

        # migrate ran once and exited 0 before the others started
        migrate = engine.run("inspect", f"{project}_migrate_1", "--format", "{{.State.ExitCode}}").stdout.strip()
        assert migrate == "0"
        for service in ("run", "serve"):
            check = engine.run("healthcheck", "run", f"{project}_{service}_1", check=False)
            assert check.returncode == 0, f"{service} health check: {check.stdout}{check.stderr}"

        subscribe(deploy_database_url, receiver.url)
        subject = str(uuid.uuid4())
        enqueue(deploy_database_url, [zaak_event(subject, n) for n in range(3)])
        wait_until(lambda: len(receiver.events()) >= 3, 30, "the events at the receiver")
        assert [e["data"]["n"] for e in receiver.events()] == [0, 1, 2]
    finally:
        down = subprocess.run(
            [*command, "down", "-v", "-t", "20"], capture_output=True, text=True, timeout=300, env=env, check=False
        )
        logs = down.stdout + down.stderr
    assert down.returncode == 0, logs[-2000:]
    left = engine.run("ps", "-a", "--filter", f"name={project}", "--format", "{{.Names}}").stdout.strip()
    assert left == "", f"containers left behind: {left}"
