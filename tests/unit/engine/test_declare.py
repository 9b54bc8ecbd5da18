"""``@job_type``'s per-type retention (core/engine/declare.py, core/engine/job_types.py Retention):
checked at declaration, so a wrong one fails at import, not in the scheduler's pruning."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from core.engine.declare import JobContext, job_type
from core.engine.job_types import Retention, get_job_type
from core.errors import UnknownJobType
from core.platform.settings import Settings


class Empty(msgspec.Struct):
    pass


def _handler(ctx: JobContext, payload: Empty) -> None:
    return None


def test_a_declared_retention_overrides_the_settings_per_status() -> None:
    job_type("test_unit_retained", payload=Empty, retain={"succeeded": 3600, "dead": 0})(_handler)
    retain = get_job_type("test_unit_retained").retain
    settings = Settings(retain_cancelled_s=120.0)
    assert retain == Retention(succeeded=3600.0, dead=0.0)
    assert retain.seconds("succeeded", settings) == 3600.0
    assert retain.seconds("dead", settings) == 0.0  # kept forever
    assert retain.seconds("cancelled", settings) == 120.0  # the setting's


def test_without_retain_a_type_follows_the_settings() -> None:
    job_type("test_unit_not_retained", payload=Empty)(_handler)
    retain = get_job_type("test_unit_not_retained").retain
    assert retain == Retention()
    assert retain.seconds("dead", Settings()) == Settings().retain_dead_s == 30 * 86400


@pytest.mark.parametrize(
    ("retain", "message"),
    [
        ({"running": 60}, "only finished jobs are removed"),
        ({"queued": 60}, "only finished jobs are removed"),
        ({"succeeded": -1}, "negative"),
        ({"succeeded": "1h"}, "number of seconds"),
        ({"dead": True}, "number of seconds"),
        ({"dead": float("inf")}, "number of seconds"),
        ({"dead": float("nan")}, "number of seconds"),
        ([("succeeded", 60)], "must map statuses to seconds"),
    ],
)
def test_a_wrong_retention_fails_at_declaration(retain: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        job_type("test_unit_badly_retained", payload=Empty, retain=retain)
    assert "test_unit_badly_retained" in str(caught.value)
    with pytest.raises(UnknownJobType):
        get_job_type("test_unit_badly_retained")  # never registered
