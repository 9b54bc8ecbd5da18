"""Reading the deployment files (Procfile, compose, Kubernetes, systemd, Prometheus and Grafana) the
way their tools do, for the tests that check them: the commands they run, the settings they set,
their numbers, the metrics they read."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import yaml

from core.cli import main
from core.engine.job_types import job_types
from core.launch.roles import known_queues
from core.platform.settings import Settings, documented_settings
from tests.services import ROOT

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "docker" / "compose.yaml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
SYSTEMD = DEPLOY / "systemd"
PROCFILE = ROOT / "Procfile"
OBSERVABILITY = DEPLOY / "observability"
RULES = OBSERVABILITY / "jobyard-rules.yaml"
PROMETHEUS_CONFIG = OBSERVABILITY / "prometheus.yml"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"

#: Every variable Jobyard reads.
SETTINGS = {env for env, _, _ in documented_settings()}
#: The worker groups every deployment runs: their names and the queues they must consume.
SCRAPE, EMBEDDINGS = "scrape", "embeddings"


def queues() -> set[str]:
    """The built-in job types' queues: what a deployment's worker groups must cover between them.

    Types the tests register (tests/jobtypes.py, imported by other tests of this session) are left
    out: a deployment does not run them.
    """
    known_queues(Settings())  # loads the built-in job modules
    return {t.queue_name for t in job_types().values() if t.payload.__module__.startswith("core.")}


def consumed_queues(argv: list[str]) -> set[str]:
    """The queues a `jobyard worker` command line consumes, as the command works them out."""
    params = check_cli(argv).params
    chosen = set(params["queues"]) or queues()
    return chosen - set(params["excluded"])


def check_cli(argv: list[str]) -> click.Context:
    """Parse a `jobyard ...` command line as the CLI would, without running it (raises on a bad one)."""
    assert Path(argv[0]).name == "jobyard", argv
    command: click.Command = main
    args, name = list(argv[1:]), "jobyard"
    while isinstance(command, click.Group):
        assert args, f"{argv}: no subcommand"
        sub = command.get_command(click.Context(command), args[0])
        assert sub is not None, f"{argv}: no command {args[0]!r}"
        command, name, args = sub, args[0], args[1:]
    return command.make_context(name, args)


def procfile() -> dict[str, list[str]]:
    """Process name -> command, with `${VAR:-default}` taking its default as a shell would."""
    lines: dict[str, list[str]] = {}
    for line in PROCFILE.read_text().splitlines():
        if found := re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line):
            command = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", found.group(2))
            lines[found.group(1)] = shlex.split(command)
    return lines


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def compose_commands() -> dict[str, list[str]]:
    return {
        name: service["command"]
        for name, service in compose()["services"].items()
        if service.get("image", "").startswith("jobyard")
    }


def k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            for doc in yaml.safe_load_all(path.read_text()):
                yield path, doc


def k8s_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in k8s_documents() if doc["kind"] == kind}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def k8s_commands() -> dict[str, list[str]]:
    return {
        name: container["command"]
        for kind in ("Deployment", "Job")
        for name, workload in k8s_kind(kind).items()
        for container in pod_spec(workload)["containers"]
    }


def systemd_units() -> dict[str, dict[str, dict[str, str]]]:
    """Unit file name -> section -> key -> value (no unit of ours repeats a key)."""
    units: dict[str, dict[str, dict[str, str]]] = {}
    for path in sorted(SYSTEMD.glob("jobyard*.service")) + sorted(SYSTEMD.glob("*.target")):
        sections: dict[str, dict[str, str]] = {}
        current: dict[str, str] = {}
        for line in path.read_text().splitlines():
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], {})
            elif line and not line.startswith("#"):
                key, _, value = line.partition("=")
                assert key not in current, f"{path.name}: {key} twice"
                current[key] = value
        units[path.name] = sections
    return units


def systemd_commands() -> dict[str, list[str]]:
    return {
        name: shlex.split(unit["Service"]["ExecStart"])
        for name, unit in systemd_units().items()
        if "Service" in unit
    }


def dockerfile_stages() -> dict[str, list[dict[str, Any]]]:
    """Stage name -> its instructions (dockerfile-parse's), FROM first; ARGs before any FROM aside."""
    from dockerfile_parse import DockerfileParser

    stages: dict[str, list[dict[str, Any]]] = {}
    for instruction in DockerfileParser(path=str(DOCKERFILE)).structure:
        if instruction["instruction"] == "FROM":
            image, _, name = instruction["value"].partition(" AS ")
            stages[name or image] = []
        if stages:
            stages[list(stages)[-1]].append(instruction)
    return stages


def env_file(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    )
    return {key: value for key, value in pairs}


def seconds(duration: str | int) -> float:
    """A compose duration (`45s`, `1m30s`) or a plain number of seconds."""
    if isinstance(duration, int):
        return float(duration)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", duration)
    assert parts, duration
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * unit[u] for n, u in parts)


def worker_groups(commands: dict[str, list[str]]) -> dict[str, set[str]]:
    return {name: consumed_queues(argv) for name, argv in commands.items() if argv[1] == "worker"}


def assert_three_worker_groups(groups: dict[str, set[str]]) -> None:
    assert sorted(map(sorted, groups.values())) == sorted(
        [[EMBEDDINGS], [SCRAPE], sorted(queues() - {SCRAPE, EMBEDDINGS})]
    ), groups


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of the rule file, across its groups."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_exprs() -> list[str]:
    """Every PromQL expression of the Grafana dashboard: its panels' targets and its variables' queries."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bjobyard_[a-z_]+", expr))


#: The samples each kind of metric family exposes.
_SAMPLES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exposed_metrics() -> set[str]:
    """The sample names GET /metrics exposes, read from the code that makes them: the families the
    control_api/*metrics.py modules compute at scrape time (a counter's name gains `_total`, a
    histogram's `_bucket`, `_sum` and `_count`), and the HTTP and authentication metrics those modules
    register in prometheus-client (Litestar's middleware with Jobyard's prefix)."""
    from prometheus_client import REGISTRY

    import control_api.auth_metrics  # noqa: F401  (registers its counters)
    from control_api.metrics import PROMETHEUS, HttpMetricsMiddleware

    names: set[str] = set()
    for path in (ROOT / "control_api").glob("*metrics.py"):
        text = path.read_text()
        for name in re.findall(r'"(jobyard_[a-z_]+)"', text):
            kind = re.search(rf'(Counter|Histogram|Gauge)(?:MetricFamily)?\(\s*"{name}"', text)
            names |= {name + suffix for suffix in _SAMPLES[kind.group(1).lower() if kind else "gauge"]}
    names.discard(PROMETHEUS.prefix)  # the HTTP metrics' prefix, not a metric
    HttpMetricsMiddleware(app=lambda *_: None, config=PROMETHEUS)  # type: ignore[arg-type]
    for family in REGISTRY.collect():
        if family.name.startswith("jobyard_"):
            names |= {family.name + suffix for suffix in _SAMPLES[family.type]}
    return names
