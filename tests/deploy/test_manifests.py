"""deploy/kubernetes/: rendered, validated against the Kubernetes schemas, and checked for what an operator relies on.

No container engine and no cluster: `render()` below does the small part of kustomize the kustomizations use
(resources, namespace, images, replicas, map-only patches) and refuses anything else, so it cannot quietly
render something kustomize would not. Where `kubectl` is installed, `kubectl kustomize` must render the same.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml

from worker.cli.main import cli
from worker.daemon.settings import WorkerSettings
from worker.service.settings import ServeSettings
from worker.store.secret_box import KEY_VARIABLE

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAY = KUBERNETES / "overlays" / "example"
# The oldest Kubernetes the manifests promise to work on, and the newest the schemas know.
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}
WORKLOADS = {"Deployment", "Job"}

Doc = dict[str, Any]


# -- rendering ---------------------------------------------------------------------------------------------------


def _load(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _merge(into: Doc, patch: Doc) -> None:
    """A strategic merge patch restricted to maps (lists would need merge keys: refused)."""
    for key, value in patch.items():
        if isinstance(value, list):
            raise AssertionError(f"render(): patches with lists are not supported ({key})")
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def render(directory: Path) -> list[Doc]:
    """The documents `kustomize build directory` gives, for the subset of kustomize used here."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - SUPPORTED_KEYS
    assert not unknown, f"render() does not implement {sorted(unknown)}: extend it, or compare with kustomize"
    docs: list[Doc] = []
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        docs.extend(render(path) if path.is_dir() else _load(path))
    for patch_entry in spec.get("patches", []):
        assert set(patch_entry) == {"path"}, f"render(): only file patches: {patch_entry}"
        for patch in _load(directory / patch_entry["path"]):
            target = [
                d for d in docs if (d["kind"], d["metadata"]["name"]) == (patch["kind"], patch["metadata"]["name"])
            ]
            assert len(target) == 1, f"patch {patch_entry['path']} matches {len(target)} documents"
            _merge(target[0], {k: v for k, v in patch.items() if k not in ("apiVersion", "kind", "metadata")})
    if "namespace" in spec:
        for doc in docs:
            doc["metadata"]["namespace"] = spec["namespace"]
    for image in spec.get("images", []):
        for container in (c for doc in docs for c in containers(doc)):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    for replicas in spec.get("replicas", []):
        [deployment] = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == replicas["name"]]
        deployment["spec"]["replicas"] = replicas["count"]
    return docs


def pod_spec(doc: Doc) -> Doc:
    spec: Doc = doc["spec"]["template"]["spec"]
    return spec


def containers(doc: Doc) -> list[Doc]:
    if doc["kind"] not in WORKLOADS:
        return []
    spec = pod_spec(doc)
    return [*spec.get("initContainers", []), *spec["containers"]]


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def command_of(container: Doc) -> str:
    """The outbox command a container runs (the image's entrypoint is `outbox`)."""
    assert "command" not in container, "the image's entrypoint (outbox) is kept"
    return str(container["args"][0])


# -- what each command reads ----------------------------------------------------------------------------------------


def _settings_variables(model: type[WorkerSettings] | type[ServeSettings]) -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        names.add(alias if isinstance(alias, str) else f"OUTBOX_{name.upper()}")
    return names


def _click_variables(command: click.Command) -> set[str]:
    found = set()
    for param in command.params:
        envvar = getattr(param, "envvar", None)
        found.update([envvar] if isinstance(envvar, str) else envvar or [])
    return found


def known_variables(command: str) -> set[str]:
    """The OUTBOX_* variables `outbox <command>` reads: the group's options, the command's own, its settings."""
    group = cli
    assert isinstance(group, click.Group)
    names = _click_variables(group) | _click_variables(group.commands[command])
    if command == "run":
        names |= _settings_variables(WorkerSettings)
    elif command == "serve":
        names |= _settings_variables(ServeSettings)
    elif command == "migrate":
        names.add(KEY_VARIABLE)  # seals older subscriptions' header values (worker/cli/main.py)
    return names


@pytest.fixture(scope="module", params=["base", "overlay"])
def docs(request: pytest.FixtureRequest) -> list[Doc]:
    return render(BASE if request.param == "base" else OVERLAY)


def workloads(docs: list[Doc]) -> Iterator[Doc]:
    return (d for d in docs if d["kind"] in WORKLOADS)


# -- the tests ------------------------------------------------------------------------------------------------------


def test_every_document_is_valid_for_kubernetes(docs: list[Doc]) -> None:
    assert {d["kind"] for d in docs} >= {"ConfigMap", "Job", "Deployment", "Service", "PodDisruptionBudget"}
    for doc in docs:
        for version in VERSIONS:
            # strict: a misspelt or misplaced field is an error, not silently dropped by the API server.
            kubernetes_validate.validate(doc, version, strict=True)


def test_a_misplaced_field_is_caught() -> None:
    """The validation above has teeth: a securityContext field put one level too high fails."""
    doc = find(render(BASE), "Deployment", "nlgov-outbox-run")
    pod_spec(doc)["readOnlyRootFilesystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize("directory", [BASE, OVERLAY], ids=["base", "overlay"])
def test_render_agrees_with_kubectl_kustomize(directory: Path) -> None:
    out = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=True).stdout

    def key(d: Doc) -> tuple[str, str]:
        return d["kind"], d["metadata"]["name"]

    assert sorted(render(directory), key=key) == sorted((d for d in yaml.safe_load_all(out) if d), key=key)


def test_pods_run_unprivileged_on_a_read_only_root(docs: list[Doc]) -> None:
    for doc in workloads(docs):
        pod = pod_spec(doc)
        assert pod["automountServiceAccountToken"] is False, doc["metadata"]["name"]
        tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in containers(doc):
            # A container's own securityContext overrides the pod's: check what takes effect.
            effective = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
            where = f"{doc['metadata']['name']}/{container['name']}"
            assert effective["runAsNonRoot"] is True, where
            assert effective["runAsUser"] == 10001, where  # the image's user; non-zero either way
            assert effective["readOnlyRootFilesystem"] is True, where
            assert effective["allowPrivilegeEscalation"] is False, where
            assert effective["capabilities"] == {"drop": ["ALL"]}, where
            assert effective["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert "privileged" not in effective, where
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes, f"{where}: /tmp is an emptyDir"  # noqa: S108
            resources = container["resources"]
            assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}, where


def test_every_variable_is_one_the_command_reads(docs: list[Doc]) -> None:
    config = find(docs, "ConfigMap", "nlgov-outbox-config")
    read_by_any = known_variables("run") | known_variables("serve") | known_variables("migrate")
    assert set(config["data"]) <= read_by_any, sorted(set(config["data"]) - read_by_any)
    for doc in workloads(docs):
        for container in containers(doc):
            command = command_of(container)
            names = {e["name"] for e in container.get("env", [])}
            unknown = names - known_variables(command)
            assert not unknown, f"{doc['metadata']['name']}: `outbox {command}` reads no {sorted(unknown)}"
            assert [r["configMapRef"]["name"] for r in container["envFrom"]] == ["nlgov-outbox-config"]


def test_secrets_come_from_the_secret_only(docs: list[Doc]) -> None:
    config = find(docs, "ConfigMap", "nlgov-outbox-config")
    assert not {"OUTBOX_DATABASE_URL", KEY_VARIABLE} & set(config["data"])
    assert not [d for d in docs if d["kind"] == "Secret"], "no Secret values in the repository"
    for doc in workloads(docs):
        for container in containers(doc):
            env = {e["name"]: e for e in container["env"]}
            for name in ("OUTBOX_DATABASE_URL", KEY_VARIABLE):
                assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "nlgov-outbox-secrets", "key": name}
            for entry in env.values():
                if "value" in entry:
                    assert "SECRET" not in entry["name"] and "://" not in entry["value"], entry


def test_probes_ask_the_ports_the_commands_listen_on(docs: list[Doc]) -> None:
    for name, variable, paths in [
        ("nlgov-outbox-run", "OUTBOX_METRICS_PORT", ("/readyz", "/healthz", "/readyz")),
        ("nlgov-outbox-serve", "OUTBOX_PORT", ("/healthz", "/healthz", "/readyz")),
    ]:
        [container] = containers(find(docs, "Deployment", name))
        port = int({e["name"]: e.get("value") for e in container["env"]}[variable])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        probes = [container[p]["httpGet"] for p in ("startupProbe", "livenessProbe", "readinessProbe")]
        assert [p["path"] for p in probes] == list(paths), name
        assert {ports[p["port"]] for p in probes} == {port}, name
    service = find(docs, "Service", "nlgov-outbox-serve")
    serve = find(docs, "Deployment", "nlgov-outbox-serve")
    assert service["spec"]["selector"] == serve["spec"]["template"]["metadata"]["labels"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"http"}


def test_termination_grace_covers_the_shutdown_grace(docs: list[Doc]) -> None:
    config = find(docs, "ConfigMap", "nlgov-outbox-config")
    for name, settings in [("nlgov-outbox-run", WorkerSettings), ("nlgov-outbox-serve", ServeSettings)]:
        grace = float(config["data"].get("OUTBOX_SHUTDOWN_GRACE", settings.model_fields["shutdown_grace"].default))
        pod = pod_spec(find(docs, "Deployment", name))
        # After the grace: releasing claims / closing connections; the kubelet's SIGKILL must not cut that.
        assert pod["terminationGracePeriodSeconds"] >= grace + 10, name


def test_each_deployment_has_a_disruption_budget_that_selects_it(docs: list[Doc]) -> None:
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        matching = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(matching) == 1, deployment["metadata"]["name"]
        assert deployment["spec"]["replicas"] > matching[0]["spec"].get("maxUnavailable", 0)


def test_the_overlay_sets_image_replicas_namespace_and_settings() -> None:
    docs = render(OVERLAY)
    assert {d["metadata"]["namespace"] for d in docs} == {"outbox"}
    assert {c["image"] for d in docs for c in containers(d)} == {"registry.example.nl/nlgov-outbox:0.1.0"}
    assert find(docs, "Deployment", "nlgov-outbox-run")["spec"]["replicas"] == 3
    data = find(docs, "ConfigMap", "nlgov-outbox-config")["data"]
    assert data["OUTBOX_PUBLIC_URL"] == "https://notificaties.example.nl"
    assert data["OUTBOX_SHUTDOWN_GRACE"] == "30"  # the base's, kept by the merge


def test_the_settings_are_valid_for_both_commands(docs: list[Doc], monkeypatch: pytest.MonkeyPatch) -> None:
    """What the pods would read at start: the ConfigMap plus each Deployment's literal values."""
    config = find(docs, "ConfigMap", "nlgov-outbox-config")["data"]
    for name, settings in [("nlgov-outbox-run", WorkerSettings), ("nlgov-outbox-serve", ServeSettings)]:
        with monkeypatch.context() as env:
            for variable in [v for v in list(os.environ) if v.startswith("OUTBOX_")]:
                env.delenv(variable)
            [container] = containers(find(docs, "Deployment", name))
            for variable, value in [
                *config.items(),
                *((e["name"], e["value"]) for e in container["env"] if "value" in e),
            ]:
                env.setenv(variable, value)
            settings.load()  # raises SettingsError naming the variable
