"""The Procfile, checked offline: real `jobyard` commands (and the check refusing wrong ones), worker
groups, and stop deadlines inside honcho's."""

from __future__ import annotations

import pytest
from honcho.manager import KILL_WAIT

from core.launch.release import CLIENTS_GRACE_S
from tests.deployfiles import (
    assert_three_worker_groups,
    check_cli,
    procfile,
    worker_groups,
)


def test_procfile_runs_every_role_with_real_commands() -> None:
    lines = procfile()
    assert list(lines) == [
        "web",
        "release",
        "worker_light",
        "worker_scrape",
        "worker_embeddings",
        "scheduler",
    ]
    for argv in lines.values():
        check_cli(argv)
    assert lines["release"][1] == "release"
    assert_three_worker_groups(worker_groups(lines))


def test_procfile_workers_stop_before_honcho_kills_them() -> None:
    """honcho SIGKILLs everything KILL_WAIT s after its SIGTERM: workers finish or hand back first,
    then `jobyard release` stops the embedded servers, all inside that window."""
    for name, argv in procfile().items():
        if argv[1] == "worker":
            deadline = check_cli(argv).params["shutdown_timeout"]
            assert deadline is not None and deadline + 1 <= CLIENTS_GRACE_S < KILL_WAIT, name


@pytest.mark.parametrize("argv", [["jobyard", "workers"], ["jobyard", "worker", "--queue", "scrape"]])
def test_a_wrong_command_fails_the_check(argv: list[str]) -> None:
    with pytest.raises(Exception):  # noqa: B017 - AssertionError or click's UsageError, either will do
        check_cli(argv)
