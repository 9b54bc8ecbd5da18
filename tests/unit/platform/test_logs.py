"""Log rendering: JSON lines into a pipe or file, console lines on a terminal (as `jobyard up` in a
shell), both carrying the bound request id."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

from tests.services import ROOT

_PROGRAM = """
import structlog
from core.platform.logs import configure_logging
from core.platform.settings import Settings
configure_logging(Settings(), process="api")
structlog.contextvars.bind_contextvars(request_id="req-42")
structlog.get_logger("t").info("job_enqueued", job_id="j1")
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBYARD_")}
    return {**env, "PYTHONPATH": str(ROOT)}


def test_a_pipe_gets_json_lines() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROGRAM], env=_env(), capture_output=True, text=True, check=True, timeout=60
    )
    line = json.loads(out.stderr.strip().splitlines()[-1])
    assert (line["event"], line["request_id"], line["job_id"], line["process"]) == (
        "job_enqueued",
        "req-42",
        "j1",
        "api",
    )


def test_a_terminal_gets_console_lines() -> None:
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", _PROGRAM], env=_env(), stderr=terminal, stdout=terminal)
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=60) == 0
    os.close(controller)
    text = b"".join(chunks).decode(errors="replace")
    assert "job_enqueued" in text
    assert "req-42" in text
    assert not text.lstrip().startswith("{")
