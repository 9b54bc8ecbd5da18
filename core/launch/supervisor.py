"""Runs the farm's processes for `jobyard up`: starts them, restarts one that dies, stops all cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)

#: A child that dies is restarted after this pause, doubling up to the maximum while it keeps dying.
RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 30.0


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    process: subprocess.Popen[bytes] | None = None
    restart_delay: float = RESTART_DELAY_S
    started_at: float = field(default=0.0)

    def start(self, env: dict[str, str]) -> None:
        # Own session: a Ctrl-C in the terminal reaches only the supervisor, which stops children in order.
        self.process = subprocess.Popen(
            list(self.argv), env=env, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self.started_at = time.monotonic()
        log.info("process_started", child=self.name, pid=self.process.pid)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    def __init__(self, children: Sequence[Child], env: dict[str, str], shutdown_timeout_s: float) -> None:
        self.children = list(children)
        self.env = env
        self.shutdown_timeout_s = shutdown_timeout_s
        self.stopping = threading.Event()

    def start(self) -> None:
        for child in self.children:
            child.start(self.env)

    def request_stop(self, signum: int | None = None, frame: object = None) -> None:
        self.stopping.set()

    def watch(self) -> None:
        """Restart children that die until a stop is requested."""
        while not self.stopping.wait(0.2):
            for child in self.children:
                if child.alive() or self.stopping.is_set():
                    continue
                code = child.process.returncode if child.process else None
                if time.monotonic() - child.started_at > 60:
                    child.restart_delay = RESTART_DELAY_S  # it ran fine for a while: not a crash loop
                log.error(
                    "process_exited", child=child.name, exit_code=code, restart_in_s=child.restart_delay
                )
                if self.stopping.wait(child.restart_delay):
                    break
                child.restart_delay = min(child.restart_delay * 2, MAX_RESTART_DELAY_S)
                child.start(self.env)

    def stop(self, order: Sequence[Sequence[str]]) -> None:
        """Stop children group by group (e.g. API and scheduler first, then workers), each with SIGTERM
        and, past the timeout, SIGKILL."""
        by_name = {c.name: c for c in self.children}
        for group in order:
            members = [by_name[n] for n in group if n in by_name]
            for child in members:
                if child.alive() and child.process:
                    child.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.shutdown_timeout_s
            for child in members:
                if child.process is None:
                    continue
                try:
                    child.process.wait(max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    log.warning("process_killed", child=child.name, after_s=self.shutdown_timeout_s)
                    os.killpg(child.process.pid, signal.SIGKILL)
                    child.process.wait()
                log.info("process_stopped", child=child.name, exit_code=child.process.returncode)
