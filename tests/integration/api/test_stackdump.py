"""An API process that seems stuck says where it waits: USR1 writes its threads' stacks, USR2 logs
its asyncio tasks' stacks (control_api/stackdump.py), and it goes on serving."""

from __future__ import annotations

import httpx

from control_api import stackdump
from tests.integration.conftest import Farm
from tests.services import wait_for


def test_the_api_shows_its_threads_and_tasks_on_signal_and_keeps_serving(farm: Farm) -> None:
    proc, base = farm.api()
    before = len(proc.log())

    proc.proc.send_signal(stackdump.THREADS_SIGNAL)
    # faulthandler writes each thread's frames, most recent first: the main thread's last is the module run.
    wait_for(lambda: "_run_module_as_main" in proc.log()[before:], what="the thread stacks")
    proc.proc.send_signal(stackdump.TASKS_SIGNAL)
    tasks_line = wait_for(lambda: _line_of("asyncio_tasks", proc.log()[before:]), what="the task stacks")

    assert "most recent call first" in proc.log()[before:]
    assert "Stack for <Task" in tasks_line
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200


def _line_of(event: str, text: str) -> str | None:
    """The whole log line of ``event``, once written to its end."""
    return next(
        (line for line in text.splitlines(keepends=True) if event in line and line.endswith("\n")), None
    )
