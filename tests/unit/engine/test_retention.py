"""How long each finished job is kept (core/engine/retention.py), without services: a type's own
``retain`` first, then the settings, which also keep the jobs of a type no longer deployed."""

from __future__ import annotations

import msgspec
import pytest

from core.engine.declare import JobContext, job_type
from core.engine.retention import oldest_per_type, retention_s
from core.platform.settings import Settings


class Empty(msgspec.Struct):
    pass


@job_type("test_unit_kept_an_hour", payload=Empty, retain={"succeeded": 3600})
def _kept(ctx: JobContext, payload: Empty) -> None:
    return None


SETTINGS = Settings(retain_succeeded_s=10.0, retain_cancelled_s=20.0, retain_dead_s=0.0)


@pytest.mark.parametrize(
    ("type_name", "status", "seconds"),
    [
        ("test_unit_kept_an_hour", "succeeded", 3600.0),
        ("test_unit_kept_an_hour", "cancelled", 20.0),
        ("test_unit_kept_an_hour", "dead", 0.0),  # forever, as the settings say
        ("a_type_no_longer_deployed", "succeeded", 10.0),
        ("a_type_no_longer_deployed", "dead", 0.0),
    ],
)
def test_a_types_own_retention_comes_first_then_the_settings(
    type_name: str, status: str, seconds: float
) -> None:
    assert retention_s(type_name, status, SETTINGS) == seconds


def test_only_final_statuses_have_a_retention() -> None:
    with pytest.raises(ValueError, match="not a final status"):
        oldest_per_type(None, "queued")  # type: ignore[arg-type]
