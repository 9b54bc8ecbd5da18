"""The compose file and the Dockerfile (deploy/docker/), checked offline: the compose file against the
Compose Specification's schema, real `jobyard` commands, worker groups, settings Jobyard reads, stop
deadlines that add up, and an image that carries what it needs."""

from __future__ import annotations

import copy
import fnmatch
import json
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import check_jsonschema
import jsonschema

from tests.deployfiles import (
    COMPOSE,
    DOCKERFILE,
    SETTINGS,
    assert_three_worker_groups,
    check_cli,
    compose,
    compose_commands,
    dockerfile_stages,
    seconds,
    worker_groups,
)
from tests.services import ROOT

COMPOSE_SCHEMA = json.loads(
    (Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json").read_text()
)


def compose_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.validators.validator_for(COMPOSE_SCHEMA)(COMPOSE_SCHEMA)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_follows_the_compose_specification() -> None:
    assert compose_errors(compose()) == []
    broken = copy.deepcopy(compose())
    broken["services"]["api"]["stop_grace_periods"] = "10s"
    assert compose_errors(broken)  # the schema does catch a misspelt key


def test_compose_services_start_in_order_and_are_checked() -> None:
    services = compose()["services"]
    stages = set(dockerfile_stages())
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            assert (
                COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]
            ).resolve() == DOCKERFILE
            assert service["build"]["target"] in stages
        for dependency, how in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], dependency
            if how["condition"] == "service_completed_successfully":
                assert services[dependency]["restart"] == "no", dependency
    for name in ("postgres", "redis", "api"):
        assert services[name]["healthcheck"]["test"], name
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert services["migrate"]["command"] == ["jobyard", "migrate"]
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_redis_keeps_its_data_and_never_evicts_and_postgres_has_pgvector() -> None:
    services = compose()["services"]
    redis_args = services["redis"]["command"]
    assert redis_args[redis_args.index("--appendonly") + 1] == "yes"
    assert redis_args[redis_args.index("--maxmemory-policy") + 1] == "noeviction"
    assert "pgvector" in services["postgres"]["image"]


def test_compose_runs_real_commands_in_three_worker_groups_with_settings_jobyard_reads() -> None:
    commands = compose_commands()
    for argv in commands.values():
        check_cli(argv)
    assert_three_worker_groups(worker_groups(commands))
    for name, service in compose()["services"].items():
        if name in commands:
            assert set(service["environment"]) <= SETTINGS, name


def test_compose_workers_get_longer_to_stop_than_their_shutdown_deadline() -> None:
    services = compose()["services"]
    for name, argv in compose_commands().items():
        if argv[1] == "worker":
            deadline = float(services[name]["environment"]["JOBYARD_WORKER_SHUTDOWN_TIMEOUT"])
            assert seconds(services[name]["stop_grace_period"]) > deadline + 5, name


def test_dockerfile_is_multi_stage_non_root_and_runs_real_commands() -> None:
    stages = dockerfile_stages()
    assert list(stages) == ["build", "build-embeddings", "base", "scraping", "embeddings", "runtime"]
    for image in ("runtime", "scraping", "embeddings"):
        (user,) = [i["value"] for i in stages[image] if i["instruction"] == "USER"]
        uid = user.split(":")[0]
        assert uid.isdigit() and int(uid) != 0, image  # numeric: Kubernetes can check runAsNonRoot
        (cmd,) = [json.loads(i["value"]) for i in stages[image] if i["instruction"] == "CMD"]
        check_cli(cmd)
    copies = [i["value"] for i in stages["base"] if i["instruction"] == "COPY"]
    assert copies == ["--from=build /opt/jobyard /opt/jobyard"]  # no compiler or pip cache in the image
    assert any("chromium" in i["value"] for i in stages["scraping"] if i["instruction"] == "RUN")
    assert [i["value"] for i in stages["base"] if i["instruction"] == "HEALTHCHECK"] == ["NONE"]


def test_dockerfile_copies_files_the_build_context_holds() -> None:
    ignore = [
        line
        for line in (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for pattern in ignore:
            negated = pattern.startswith("!")
            pattern = pattern.lstrip("!").rstrip("/")
            if pattern == "**" or fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                keep = negated
        return keep

    for instruction in (i for stage in dockerfile_stages().values() for i in stage):
        if instruction["instruction"] == "COPY" and not instruction["value"].startswith("--from"):
            *sources, _ = shlex.split(instruction["value"])
            for source in sources:
                assert (ROOT / source).exists(), source
                assert included(source), f"{source} is excluded from the build context"


def test_the_wheel_the_image_installs_carries_every_migration(tmp_path: Path) -> None:
    # Built from what the Dockerfile copies, in a directory of its own (a build writes into its source).
    source = tmp_path / "src"
    for instruction in dockerfile_stages()["build"]:
        if instruction["instruction"] == "COPY":
            *names, _ = shlex.split(instruction["value"])
            for name in names:
                if (ROOT / name).is_dir():
                    shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    source.mkdir(exist_ok=True)
                    shutil.copy(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("jobyard-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    revisions = {f"migrations/versions/{p.name}" for p in (ROOT / "migrations" / "versions").glob("*.py")}
    assert revisions and revisions <= names
