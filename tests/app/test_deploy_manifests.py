"""The Kubernetes manifests under deploy/k8s, checked offline: every object against the
Kubernetes 1.37 schemas in strict mode (unknown fields are errors), and what they mean
against the code: probe paths are routes of the app, every variable is a setting,
every command and option is one the CLI has, ports agree between containers, Services
and probes, selectors find their pods, and each pod is given time to drain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import typer.main
import yaml

from promptstack.cli import app
from promptstack.core.settings import Settings
from tests.fixtures.support import Api

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES = "1.37.0"
SETTINGS = {name.upper() for name in Settings.model_fields}


def _objects() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


OBJECTS = _objects()
WORKLOADS = [(name, doc) for name, doc in OBJECTS if doc["kind"] in {"Deployment", "Job"}]


def _pod(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in OBJECTS if doc["kind"] == kind]


@pytest.mark.parametrize(("name", "doc"), OBJECTS, ids=[f"{n}-{d['kind']}" for n, d in OBJECTS])
def test_every_object_is_valid_against_the_kubernetes_schema(
    name: str, doc: dict[str, Any]
) -> None:
    kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_strict_validation_catches_a_misspelt_field() -> None:
    """Without strict mode a typo passes; the check above would be worth nothing."""
    deployment = next(doc for _, doc in WORKLOADS if doc["kind"] == "Deployment")
    misspelt = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    kubernetes_validate.validate(misspelt, KUBERNETES, strict=False)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, KUBERNETES, strict=True)


def test_the_kustomization_applies_every_manifest_but_the_secret_template() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files - {"secret.template.yaml"}
    assert {image["name"] for image in kustomization["images"]} == {
        container["image"] for _, doc in WORKLOADS for container in _pod(doc)["containers"]
    }


def test_every_variable_is_a_setting() -> None:
    for doc in _of_kind("ConfigMap") + _of_kind("Secret"):
        values = doc.get("data") or doc.get("stringData") or {}
        assert set(values) <= SETTINGS, set(values) - SETTINGS
    for _, doc in WORKLOADS:
        for container in _pod(doc)["containers"]:
            assert {item["name"] for item in container.get("env", [])} <= SETTINGS
            sources = {
                source.get("configMapRef", source.get("secretRef", {}))["name"]
                for source in container["envFrom"]
            }
            assert sources == {"promptstack-settings", "promptstack-secrets"}


def test_every_command_and_option_is_the_clis() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for _, doc in WORKLOADS:
        for container in _pod(doc)["containers"]:
            program, command, *arguments = container["command"]
            assert program == "promptstack"
            assert command in commands, command
            options = {opt for param in commands[command].params for opt in param.opts}
            flags = [argument for argument in arguments if argument.startswith("--")]
            assert set(flags) <= options, set(flags) - options


@pytest.mark.adapter_only
async def test_probe_paths_answer_and_ports_agree(api: Api) -> None:
    for _, doc in WORKLOADS:
        for container in _pod(doc)["containers"]:
            ports = {port["name"]: port["containerPort"] for port in container.get("ports", [])}
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = container.get(kind)
                if probe is None:
                    continue
                check = probe.get("httpGet") or probe.get("tcpSocket")
                assert check["port"] in ports, (kind, check["port"])
                if "httpGet" in probe:
                    answer = await api.client.get(probe["httpGet"]["path"])
                    assert answer.status_code == 200, (probe["httpGet"]["path"], answer.text)
    api = next(
        doc for doc in _of_kind("Deployment") if doc["metadata"]["name"] == "promptstack-api"
    )
    [container] = _pod(api)["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert "startupProbe" in container
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert container["command"][container["command"].index("--port") + 1] == str(ports["http"])
    for service in _of_kind("Service"):
        labels = api["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports


def test_selectors_find_their_pods() -> None:
    deployments = {doc["metadata"]["name"]: doc for doc in _of_kind("Deployment")}
    for doc in deployments.values():
        selector = doc["spec"]["selector"]["matchLabels"]
        assert selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()
    for hpa in _of_kind("HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        assert hpa["spec"]["minReplicas"] >= 2
    api_labels = deployments["promptstack-api"]["spec"]["template"]["metadata"]["labels"]
    for pdb in _of_kind("PodDisruptionBudget"):
        assert pdb["spec"]["selector"]["matchLabels"].items() <= api_labels.items()
    assert deployments["promptstack-api"]["spec"]["replicas"] >= 2


def test_every_pod_drains_within_its_grace_and_runs_locked_down() -> None:
    [settings] = _of_kind("ConfigMap")
    grace = float(settings["data"]["SHUTDOWN_GRACE_SECONDS"])
    for name, doc in WORKLOADS:
        pod = _pod(doc)
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod["containers"]:
            locked = container["securityContext"]
            assert locked["readOnlyRootFilesystem"] is True, name
            assert locked["allowPrivilegeEscalation"] is False, name
            assert locked["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), name
            assert {"cpu", "memory"} <= container["resources"]["limits"].keys(), name
            if doc["kind"] == "Deployment":
                pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {})
                assert pod["terminationGracePeriodSeconds"] > grace + pause.get("seconds", 0)
    api = next(
        doc for doc in _of_kind("Deployment") if doc["metadata"]["name"] == "promptstack-api"
    )
    assert _pod(api)["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"] > 0


def test_only_the_apps_pods_reach_the_data_stores() -> None:
    [policy] = _of_kind("NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "promptstack"}}}
    ]
    assert {port["port"] for port in rule["ports"]} == {5432, 6379, 5672}
    for _, doc in WORKLOADS:
        assert (
            doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "promptstack"
        )
