"""A settled heap (core/platform/heap.py): after start-up, a full collection walks only what was made since."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.services import ROOT

PROBE = """
import gc, json
import control_api.app, workers.execution, workers.scheduler
from core.platform.heap import settle
before = len(gc.get_objects())
settle()
made_since = [{"n": i} for i in range(100)]
print(json.dumps({"before": before, "frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())}))
"""


def test_settling_takes_start_ups_objects_out_of_every_collection() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["before"] > 20_000  # the libraries a farm process imports
    assert got["frozen"] >= got["before"] * 0.9  # kept (nothing freed but garbage), never walked again
    assert got["tracked"] < 1_000  # a full collection now walks what was made since: the list above
