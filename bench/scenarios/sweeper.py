"""One sweeper pass with a large backlog queued: the sweeper before issue 15 (the peer) and now, on
the same data, passes alternating. See bench/sweeper.py, which also runs on its own."""

from __future__ import annotations

import argparse
from typing import Any

from bench.harness import Bench
from bench.sweeper import measure


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    bench.reset()
    result = measure(
        bench.settings,
        queued=args.sweeper_queued,
        passes=args.sweeper_passes,
        consumers=4,
        held=100,
        batch=bench.settings.scheduler_batch,
    )
    bench.reset()  # a million queued jobs would weigh on every scenario after this one
    return result
