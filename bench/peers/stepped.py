"""A peer program driven in steps over a pipe (bench/peers/playwright_loop.py, embed_direct.py):
it prints `ready {json}` once set up, does one measured step for every `go N` line it reads
and answers `done {json}`, and exits at the end of its stdin. The harness times each step and
reads the CPU its whole process tree used meanwhile."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench.cputree import tree_cpu_by_kind
from bench.harness import Bench


@dataclass
class Step:
    answer: dict[str, Any]
    seconds: float
    cpu: Counter[str]


class SteppedPeer:
    def __init__(self, bench: Bench, name: str, argv: list[str]) -> None:
        self.log_path = bench.workdir / f"peer-{name}.log"
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            argv,
            env=bench.env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,
        )
        self.ready = self._answer("ready")

    def _answer(self, word: str) -> dict[str, Any]:
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if not line.startswith(word + " "):
            self._log.flush()
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the peer said {line!r}, not {word!r}; {self.log_path} ends:\n{tail}")
        return dict(json.loads(line[len(word) + 1 :]))

    def step(self, count: int) -> Step:
        assert self.popen.stdin is not None
        cpu0 = tree_cpu_by_kind(self.popen.pid)
        started = time.perf_counter()
        self.popen.stdin.write(f"go {count}\n")
        self.popen.stdin.flush()
        answer = self._answer("done")
        seconds = time.perf_counter() - started
        return Step(answer, seconds, tree_cpu_by_kind(self.popen.pid) - cpu0)

    def stop(self) -> None:
        if self.popen.stdin is not None:
            self.popen.stdin.close()
        try:
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self._log.close()
