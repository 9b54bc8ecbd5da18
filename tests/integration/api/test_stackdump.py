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
    threads = wait_for(lambda: proc.log()[before:], what="the thread stacks")
    proc.proc.send_signal(stackdump.TASKS_SIGNAL)
    wait_for(lambda: "asyncio_tasks" in proc.log()[before:], what="the task stacks")

    assert "most recent call first" in threads  # faulthandler's header of each thread
    tasks_line = next(line for line in proc.log()[before:].splitlines() if "asyncio_tasks" in line)
    assert "Stack for <Task" in tasks_line
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
