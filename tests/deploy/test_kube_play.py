"""deploy/kubernetes/ run for real: `podman kube play` of the migrate Job's pod and the worker and service Deployments.

The variant differs from the base only where a laptop is not a cluster: the test image (imagePullPolicy Never),
host networking (the test PostgreSQL and the receiver listen on 127.0.0.1), one replica, free ports, and the
test database's URL in the Secret. Events enqueued on the host arrive at a receiver on the host through the
containerised worker; the service answers /readyz; SIGTERM stops both with exit 0 within the grace period.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from cryptography.fernet import Fernet

from outbox import Subscription
from tests.deploy.test_manifests import BASE, Doc, containers, find, pod_spec, render
from tests.support import Receiver, count_delivered, enqueue, free_port, wait_until, zaak_event
from worker.store import subscriptions as subscription_store
from worker.store.secret_box import SecretBox

pytestmark = pytest.mark.deploy

SECRET = "nlgov-outbox-secrets"
NETWORK = "podman-default-kube-network"
# podman names a Pod as it is, a Deployment's pod `<name>-pod-0`, a container `<pod>-<container>`.
PODS = ("nlgov-outbox-migrate", "nlgov-outbox-run-pod-0", "nlgov-outbox-serve-pod-0")


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def set_env(container: Doc, name: str, value: str) -> None:
    env = [e for e in container["env"] if e["name"] != name]
    container["env"] = [*env, {"name": name, "value": value}]


def variant(image: str, ports: dict[str, int]) -> list[Doc]:
    """The base's ConfigMap, the migrate Job as a Pod, and the two Deployments, made runnable here."""
    docs = render(BASE)
    config = find(docs, "ConfigMap", "nlgov-outbox-config")
    # The receiver is on loopback, which the worker refuses by default (outbound safety).
    config["data"]["OUTBOX_ALLOWED_NETWORKS"] = "127.0.0.0/8"
    config["data"]["OUTBOX_POLL_INTERVAL"] = "0.2"
    job = find(docs, "Job", "nlgov-outbox-migrate")
    # podman plays no Jobs: the Job's pod template as a Pod that runs once.
    migrate: Doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "nlgov-outbox-migrate", "labels": job["spec"]["template"]["metadata"]["labels"]},
        "spec": {**copy.deepcopy(pod_spec(job)), "restartPolicy": "Never"},
    }
    run = find(docs, "Deployment", "nlgov-outbox-run")
    serve = find(docs, "Deployment", "nlgov-outbox-serve")
    for deployment in (run, serve):
        deployment["spec"]["replicas"] = 1
    for doc in (migrate, run, serve):
        spec = doc["spec"] if doc["kind"] == "Pod" else pod_spec(doc)
        spec["hostNetwork"] = True
        for container in containers(doc) if doc["kind"] != "Pod" else spec["containers"]:
            container["image"] = image
            container["imagePullPolicy"] = "Never"
    [worker] = containers(run)
    set_env(worker, "OUTBOX_METRICS_PORT", str(ports["metrics"]))
    [service] = containers(serve)
    set_env(service, "OUTBOX_PORT", str(ports["http"]))
    for container in (worker, service):
        # On the host network podman refuses port mappings; it would turn the probes into health checks run
        # by systemd timers, which this machine lacks: the test asks the probes' endpoints itself.
        for field in ("ports", "startupProbe", "livenessProbe", "readinessProbe"):
            container.pop(field)
    return [config, migrate, run, serve]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 (http://127.0.0.1 only)
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def inspect(container: str) -> dict[str, Any]:
    [state] = json.loads(podman("inspect", container).stdout)
    return state  # type: ignore[no-any-return]


@contextlib.contextmanager
def secret(database_url: str, key: str) -> Iterator[None]:
    """The Secret the manifests name, as a podman secret: podman 4.3's `kube play` resolves secretKeyRef against
    a podman secret holding a JSON object of base64 values (a Secret's `data`, without the rest)."""
    values = {"OUTBOX_DATABASE_URL": database_url, "OUTBOX_SECRET_KEY": key}
    document = {name: base64.b64encode(value.encode()).decode() for name, value in values.items()}
    result = subprocess.run(
        ["podman", "secret", "create", SECRET, "-"],
        input=json.dumps(document),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    try:
        yield
    finally:
        podman("secret", "rm", SECRET, check=False)


@contextlib.contextmanager
def played(kubefile: Path) -> Iterator[None]:
    """`podman kube play`, then `podman kube down`, removing the pause image and network only if we made them."""
    images_before = set(podman("images", "--quiet", "--no-trunc").stdout.split())
    network_before = podman("network", "exists", NETWORK, check=False).returncode == 0
    try:
        podman("kube", "play", str(kubefile), timeout=300)
        yield
    finally:
        podman("kube", "down", str(kubefile), check=False, timeout=120)
        # kube down stops at the first pod it cannot find (a play that failed half way): remove ours by name.
        for pod in PODS:
            if podman("pod", "exists", pod, check=False).returncode == 0:
                podman("pod", "rm", "--force", pod, check=False)
        for image in set(
            podman("images", "--quiet", "--no-trunc", "--filter", "reference=*podman-pause*").stdout.split()
        ):
            if image not in images_before:
                podman("rmi", image, check=False)
        if not network_before:
            podman("network", "rm", NETWORK, check=False)


def test_worker_and_service_deployments_run_in_podman(
    outbox_image: str, deploy_database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    key = Fernet.generate_key().decode()
    ports = {"metrics": free_port(), "http": free_port()}
    config, migrate, run, serve = variant(outbox_image, ports)
    migrate_file, apps_file = tmp_path / "migrate.yaml", tmp_path / "apps.yaml"
    migrate_file.write_text(yaml.safe_dump_all([config, migrate], sort_keys=False))
    apps_file.write_text(yaml.safe_dump_all([config, run, serve], sort_keys=False))

    with secret(deploy_database_url, key), played(migrate_file):
        # The migrate pod ran `outbox migrate` to completion, as the Job does before the workers settle.
        wait_until(
            lambda: inspect("nlgov-outbox-migrate-migrate")["State"]["Status"] == "exited", 60, "migrate to finish"
        )
        assert inspect("nlgov-outbox-migrate-migrate")["State"]["ExitCode"] == 0
        with psycopg.connect(deploy_database_url) as conn:
            assert conn.execute("SELECT max(version) FROM outbox.schema_migrations").fetchone()
            subscription = Subscription.create(callback_url=receiver.url, allow_insecure=True, types=["*"])
            subscription_store.add(conn, subscription, "outbox", SecretBox.from_setting(key))
        with played(apps_file):
            _exercise(deploy_database_url, receiver, ports)


def _exercise(deploy_database_url: str, receiver: Receiver, ports: dict[str, int]) -> None:
    """Delivery through the containerised worker, the service's answers, and a clean stop."""
    wait_until(lambda: get(f"http://127.0.0.1:{ports['metrics']}/readyz")[0] == 200, 90, "the worker's /readyz")
    assert get(f"http://127.0.0.1:{ports['metrics']}/healthz")[0] == 200
    wait_until(lambda: get(f"http://127.0.0.1:{ports['http']}/readyz")[0] == 200, 60, "the service's /readyz")
    assert get(f"http://127.0.0.1:{ports['http']}/healthz") == (200, "ok\n")

    events = [zaak_event(f"zaak-{n}", n) for n in range(20)]
    enqueue(deploy_database_url, events)
    wait_until(lambda: len(receiver.received) >= len(events), 60, "the events at the receiver")
    assert sorted(receiver.ids()) == sorted(e.id for e in events)
    wait_until(lambda: count_delivered(deploy_database_url) == len(events), 20, "delivered rows")

    # Inside: the image's user, not root, on a read-only root filesystem.
    worker = inspect(_container("nlgov-outbox-run"))
    assert worker["Config"]["User"].split(":")[0] == "10001"
    assert worker["HostConfig"]["ReadonlyRootfs"] is True
    assert not worker.get("EffectiveCaps")  # none left (podman shows null)

    # SIGTERM (pod stop), as Kubernetes sends it: exit 0 well within terminationGracePeriodSeconds (45).
    started = time.monotonic()
    for pod in ("nlgov-outbox-run", "nlgov-outbox-serve"):
        podman("pod", "stop", "--time", "45", _pod(pod), timeout=60)
    stopped_in = time.monotonic() - started
    for name in ("nlgov-outbox-run", "nlgov-outbox-serve"):
        assert inspect(_container(name))["State"]["ExitCode"] == 0, name
    assert stopped_in < 30


def _pod(deployment: str) -> str:
    return f"{deployment}-pod-0"


def _container(deployment: str) -> str:
    component = deployment.removeprefix("nlgov-outbox-")
    return f"{_pod(deployment)}-{component}"
