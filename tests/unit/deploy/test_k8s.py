"""The Kubernetes manifests, checked offline: every built-in kind against the Kubernetes schemas
(kubernetes-validate, strict), KEDA's kinds against a schema written from KEDA's documented spec,
and the references between them against each other and against what Jobyard really does."""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from control_api.app import create_app
from core.platform.settings import Settings
from tests.deployfiles import (
    EMBEDDINGS,
    K8S,
    SCRAPE,
    SETTINGS,
    check_cli,
    consumed_queues,
    k8s_commands,
    k8s_documents,
    k8s_kind,
    pod_spec,
    queues,
)

KUBERNETES_VERSION = "1.30.0"
#: The GJSON path of a queue's waiting messages in GET /v1/queues (core.engine.queues.Overview).
QUEUE_READY = re.compile(r'queues\.#\(name=="(\w+)"\)\.ready')
KEDA_SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "keda-v1alpha1.json").read_text())


def keda_errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(KEDA_SCHEMA)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.mark.parametrize(
    ("path", "doc"), [pytest.param(p, d, id=f"{p.name}:{d['kind']}") for p, d in k8s_documents()]
)
def test_each_manifest_is_valid(path: Path, doc: dict[str, Any]) -> None:
    if doc["apiVersion"].startswith("keda.sh/"):
        assert keda_errors(doc) == []
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_keda_schema_refuses_what_keda_refuses() -> None:
    good = k8s_kind("ScaledObject")["jobyard-worker-light"]
    assert keda_errors(good) == []
    broken = []
    for change in (
        lambda d: d["spec"]["triggers"][0]["metadata"].update(targetValue=500),  # KEDA wants strings
        lambda d: d["spec"]["triggers"][0]["metadata"].pop("valueLocation"),
        lambda d: d["spec"]["triggers"][0]["metadata"].update(valuelocation="x"),
        lambda d: d["spec"]["triggers"][0].pop("authenticationRef"),  # then no key for authMode
        lambda d: d["spec"]["triggers"][0]["metadata"].update(authMode="token"),
        lambda d: d["spec"]["triggers"][0].update(type="redis"),  # a Redis trigger needs listName
        lambda d: d["spec"]["scaleTargetRef"].pop("name"),
        lambda d: d["spec"].update(triggers=[]),
        lambda d: d["spec"].update(maxReplicas=3),
    ):
        doc = copy.deepcopy(good)
        change(doc)
        broken.append(bool(keda_errors(doc)))
    assert all(broken), broken


def test_kustomization_lists_every_manifest_and_image() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    images = {
        c["image"]
        for _, d in k8s_documents()
        if "template" in d.get("spec", {})
        for c in pod_spec(d)["containers"]
    }
    assert images == {i["name"] for i in kustomization["images"]}


def test_every_command_is_a_real_jobyard_command() -> None:
    commands = k8s_commands()
    assert set(commands) == {
        "jobyard-api",
        "jobyard-migrate",
        "jobyard-scheduler",
        "jobyard-worker-light",
        "jobyard-worker-scrape",
        "jobyard-worker-embeddings",
    }
    for argv in commands.values():
        check_cli(argv)


def test_worker_groups_consume_every_queue_once_and_keda_watches_exactly_those_queues() -> None:
    consumed = {
        name.removeprefix("jobyard-worker-"): consumed_queues(argv)
        for name, argv in k8s_commands().items()
        if name.startswith("jobyard-worker-")
    }
    assert consumed["scrape"] == {SCRAPE}
    assert consumed["embeddings"] == {EMBEDDINGS}
    assert consumed["light"] == queues() - {SCRAPE, EMBEDDINGS}
    deployments = k8s_kind("Deployment")
    auths = k8s_kind("TriggerAuthentication")
    (api_service,) = k8s_kind("Service")
    namespace = yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"]
    for name, scaled in k8s_kind("ScaledObject").items():
        target = scaled["spec"]["scaleTargetRef"]["name"]
        assert target == name and target in deployments
        watched = set()
        for trigger in scaled["spec"]["triggers"]:
            # GET /v1/queues counts every tenant's lanes (a queue is no single Redis list any more).
            assert trigger["type"] == "metrics-api"
            assert trigger["authenticationRef"]["name"] in auths
            metadata = trigger["metadata"]
            assert metadata["url"] == f"http://{api_service}.{namespace}.svc/v1/queues"
            assert (metadata["authMode"], metadata["keyParamName"]) == ("apiKey", "X-API-Key")
            found = QUEUE_READY.fullmatch(metadata["valueLocation"])
            assert found, metadata["valueLocation"]
            watched.add(found.group(1))
        assert watched == consumed[name.removeprefix("jobyard-worker-")], name


def test_secrets_and_config_hold_only_settings_jobyard_reads() -> None:
    secrets = k8s_kind("Secret")
    config = k8s_kind("ConfigMap")["jobyard-config"]["data"]
    assert set(config) <= SETTINGS
    assert set(secrets["jobyard-secrets"]["stringData"]) <= SETTINGS
    # Keys go to Secrets, never to the ConfigMap.
    assert not {"DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "WHATSAPP_TOKEN", "WHATSAPP_APP_SECRET"} & set(
        config
    )
    assert set(secrets["jobyard-scrape-secrets"]["stringData"]) <= SETTINGS
    workloads = {**k8s_kind("Deployment"), **k8s_kind("Job")}
    for name, workload in workloads.items():
        # The scrape workers load anyone's pages: they get a Secret of their own (below).
        secret = "jobyard-scrape-secrets" if name == "jobyard-worker-scrape" else "jobyard-secrets"
        for container in pod_spec(workload)["containers"]:
            sources = {(next(iter(s)), next(iter(s.values()))["name"]) for s in container["envFrom"]}
            assert sources == {("configMapRef", "jobyard-config"), ("secretRef", secret)}, name
    for auth in k8s_kind("TriggerAuthentication").values():
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["key"] in secrets[ref["name"]]["stringData"]
        # The metrics-api triggers' API key (authMode apiKey), from a Secret of its own.
        assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} == {"apiKey"}


def test_workers_get_longer_to_stop_than_their_shutdown_deadline() -> None:
    config = k8s_kind("ConfigMap")["jobyard-config"]["data"]
    deadline = float(config.get("JOBYARD_WORKER_SHUTDOWN_TIMEOUT", Settings().worker_shutdown_timeout_s))
    workers = {n: d for n, d in k8s_kind("Deployment").items() if n.startswith("jobyard-worker-")}
    assert len(workers) == 3
    for name, deployment in workers.items():
        grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
        assert grace > deadline + 5, f"{name}: {grace} s to stop, {deadline} s to finish jobs and hand back"


def test_the_api_is_probed_scaled_and_budgeted() -> None:
    (api,) = pod_spec(k8s_kind("Deployment")["jobyard-api"])["containers"]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["startupProbe"]["httpGet"]["path"] == "/healthz"
    # The startup probe outlasts the wait for the migration before the API listens.
    startup = api["startupProbe"]["periodSeconds"] * api["startupProbe"]["failureThreshold"]
    assert startup > Settings().services_wait_s
    paths = {route.path for route in create_app(Settings(), configure_logs=False).routes}
    assert {"/healthz", "/readyz"} <= paths
    hpa = k8s_kind("HorizontalPodAutoscaler")["jobyard-api"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "jobyard-api"
    assert "cpu" in api["resources"]["requests"]  # the HPA's utilisation is relative to it


def test_every_deployment_has_a_disruption_budget_and_runs_as_non_root() -> None:
    budgets = k8s_kind("PodDisruptionBudget")
    for name, deployment in k8s_kind("Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert budgets[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        pod = pod_spec(deployment)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            if container["securityContext"].get("readOnlyRootFilesystem"):
                mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
                assert "/tmp" in mounts, name  # noqa: S108 - a path inside the pod
    autoscaled = {d["spec"]["scaleTargetRef"]["name"] for d in k8s_kind("ScaledObject").values()}
    autoscaled |= {d["spec"]["scaleTargetRef"]["name"] for d in k8s_kind("HorizontalPodAutoscaler").values()}
    for name in autoscaled:
        assert "replicas" not in k8s_kind("Deployment")[name]["spec"], f"{name}: the autoscaler owns replicas"


def test_scrape_workers_are_sandboxed_with_a_minimal_secret_and_egress_policy() -> None:
    """Chromium loads pages of anyone's choosing; what a page that broke out of it would find is
    only what scrape jobs need, and where it could connect is only the public internet and the
    farm's own Postgres, Redis and DNS."""
    scrape_secret = set(k8s_kind("Secret")["jobyard-scrape-secrets"]["stringData"])
    assert scrape_secret == {"DATABASE_URL", "REDIS_URL", "JOBYARD_DATA_KEY"}
    config = set(k8s_kind("ConfigMap")["jobyard-config"]["data"])
    assert not {s for s in SETTINGS if "TOKEN" in s or "SECRET" in s or s.endswith("_API_KEY")} & config

    deployment = k8s_kind("Deployment")["jobyard-worker-scrape"]
    pod = pod_spec(deployment)
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["capabilities"]["drop"] == ["ALL"]
    assert context["allowPrivilegeEscalation"] is False
    # Chromium's sandbox needs user namespaces, which RuntimeDefault seccomp refuses: it stays off.
    assert "JOBYARD_CHROMIUM_SANDBOX" not in k8s_kind("ConfigMap")["jobyard-config"]["data"]
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp", "/dev/shm", "/home/jobyard"}  # noqa: S108

    policy = k8s_kind("NetworkPolicy")["jobyard-worker-scrape"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"} and policy["ingress"] == []
    blocks = [peer["ipBlock"] for rule in policy["egress"] for peer in rule["to"] if "ipBlock" in peer]
    (anywhere_v4,) = [b for b in blocks if b["cidr"] == "0.0.0.0/0"]
    (anywhere_v6,) = [b for b in blocks if b["cidr"] == "::/0"]
    refused = {ipaddress.ip_network(n) for n in anywhere_v4["except"] + anywhere_v6["except"]}
    for address in ("169.254.169.254", "10.1.2.3", "172.16.0.1", "192.168.1.1", "127.0.0.1", "100.64.0.1"):
        assert any(ipaddress.ip_address(address) in net for net in refused), address
    assert any(ipaddress.ip_address("fd00::1") in net for net in refused)
    ports = {p["port"] for rule in policy["egress"] for p in rule.get("ports", [])}
    assert {53, 5432, 6379} <= ports
    for other in set(k8s_kind("Deployment")) - {"jobyard-worker-scrape"}:
        assert pod_spec(k8s_kind("Deployment")[other])["automountServiceAccountToken"] is False, other
