"""The systemd units (deploy/systemd/), checked offline: systemd-analyze, real `jobyard` commands,
worker groups, and stop deadlines that add up."""

from __future__ import annotations

import subprocess
from pathlib import Path

from core.platform.settings import Settings
from tests.deployfiles import (
    SETTINGS,
    SYSTEMD,
    assert_three_worker_groups,
    check_cli,
    env_file,
    systemd_commands,
    systemd_units,
    worker_groups,
)
from tests.services import JOBYARD


def test_systemd_units_pass_systemd_analyze(tmp_path: Path) -> None:
    # The units name the installed path; point them at this checkout's command so that
    # `systemd-analyze verify` can check everything else (unknown keys, bad values, dependencies).
    for path in SYSTEMD.glob("jobyard*"):
        if path.suffix in (".service", ".target"):
            text = path.read_text().replace("/opt/jobyard/bin/jobyard", JOBYARD[0])
            (tmp_path / path.name).write_text(text)
    units = sorted(str(p) for p in tmp_path.iterdir())
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_systemd_units_run_real_commands_and_stop_in_time() -> None:
    commands = systemd_commands()
    for argv in commands.values():
        assert argv[0] == "/opt/jobyard/bin/jobyard"
        check_cli(argv)
    assert_three_worker_groups(worker_groups(commands))
    environment = env_file(SYSTEMD / "jobyard.env.example")
    assert set(environment) <= SETTINGS
    deadline = float(environment.get("JOBYARD_WORKER_SHUTDOWN_TIMEOUT", Settings().worker_shutdown_timeout_s))
    for name, unit in systemd_units().items():
        service = unit.get("Service")
        if service is None or service["Type"] == "oneshot":
            continue
        # SIGTERM to the main process only: it stops its children in order.
        assert service["KillMode"] == "mixed", name
        assert service["User"] == "jobyard", name
        if commands[name][1] == "worker":
            assert float(service["TimeoutStopSec"]) > deadline + 5, name
        assert "jobyard-migrate.service" in unit["Unit"]["After"], name
