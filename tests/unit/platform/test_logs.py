"""Log rendering: JSON lines into a pipe or file, console lines on a terminal (as `jobyard up` in a
shell), both carrying the bound request id."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from core.platform.logs import WRITE_BYTES, LineWriter
from tests.services import ROOT, wait_for

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
    # ISO 8601 in UTC, microseconds and a Z, as structlog's TimeStamper(fmt="iso", utc=True) wrote it.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", line["timestamp"])
    stamped = datetime.fromisoformat(line["timestamp"])
    assert timedelta(0) <= datetime.now(UTC) - stamped < timedelta(seconds=60)


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


class _Recorded:
    """A binary stream that keeps each write apart."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.writes.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


class _Stream:
    """A text stream with its binary layer, as sys.stderr is; not a terminal."""

    def __init__(self) -> None:
        self.buffer = _Recorded()

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def text(self) -> bytes:
        return b"".join(self.buffer.writes)


def test_lines_wait_a_moment_to_go_together_but_a_warning_takes_them_at_once() -> None:
    stream = _Stream()
    writer = LineWriter(stream, interval=0.05)  # type: ignore[arg-type]
    writer.write(b'{"event":"a"}\n')
    writer.write(b'{"event":"b"}\n')
    assert stream.text() == b""
    writer.write(b'{"event":"c","level":"warning"}\n', urgent=True)
    assert stream.text() == b'{"event":"a"}\n{"event":"b"}\n{"event":"c","level":"warning"}\n'
    assert len(stream.buffer.writes) == 1
    # Kept lines go within the interval, by themselves.
    writer.write(b'{"event":"d"}\n')
    wait_for(lambda: stream.text().endswith(b'{"event":"d"}\n'), timeout=5, what="the kept line")


def test_a_write_holds_whole_lines_and_at_most_a_pipe_buffer() -> None:
    stream = _Stream()
    writer = LineWriter(stream)  # type: ignore[arg-type]
    lines = [b'{"n":%d,"pad":"%s"}\n' % (i, b"x" * (i * 37 % 300)) for i in range(400)]
    long_line = b'{"pad":"' + b"y" * (2 * WRITE_BYTES) + b'"}\n'
    for line in [*lines[:200], long_line, *lines[200:]]:
        writer.write(line)
    writer.flush()
    assert stream.text() == b"".join([*lines[:200], long_line, *lines[200:]])
    for data in stream.buffer.writes:
        assert data.endswith(b"\n")
        assert len(data) <= WRITE_BYTES or data == long_line


_FORKED = """
import multiprocessing, sys
import structlog
from dramatiq.compat import StreamablePipe
from core.platform.logs import configure_logging
from core.platform.settings import Settings

def child(pipe, close):
    # As in a Dramatiq worker process: stderr is a pipe to the main process, and the process ends
    # through multiprocessing's os._exit, without atexit; the pipe may be closed by then.
    sys.stderr = StreamablePipe(pipe)
    configure_logging(Settings(), process="worker")
    structlog.get_logger("t").info("last_words", closed=close)
    if close:
        sys.stderr.close()

if __name__ == "__main__":
    close = sys.argv[1] == "closed"
    read, write = multiprocessing.get_context("fork").Pipe(duplex=False)
    proc = multiprocessing.get_context("fork").Process(target=child, args=(write, close))
    proc.start()
    write.close()
    got = []
    while True:
        try:
            got.append(read.recv_bytes().decode())
        except EOFError:
            break
    proc.join()
    print("".join(got), end="")
"""


def test_a_worker_process_ending_without_atexit_writes_its_last_lines() -> None:
    for how in ("open", "closed"):
        out = subprocess.run(
            [sys.executable, "-c", _FORKED, how], env=_env(), capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        # Through the pipe, or (closed) straight to the process's stderr.
        found = [json.loads(x) for x in (out.stdout + out.stderr).splitlines() if '"last_words"' in x]
        assert [(x["event"], x["process"]) for x in found] == [("last_words", "worker")], (
            out.stdout,
            out.stderr,
        )
