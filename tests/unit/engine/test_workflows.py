"""A workflow's steps checked before anything is stored (core/engine/workflows.py): names, types,
after lists, cycles, templates naming only ancestors, the cap on steps, payloads without templates."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.catalog import load_job_types
from core.engine.workflow_spec import MAX_STEPS, StepSpec, ancestors, check_steps
from core.engine.workflows import _shown_state, _step_states
from core.platform.settings import Settings
from tests.properties import PROPERTY


@pytest.fixture(autouse=True, scope="module")
def _types() -> None:
    load_job_types(Settings(job_modules=("tests.jobtypes",)))


def step(name: str, *after: str, value: object = 1, type: str = "test_echo") -> StepSpec:
    return StepSpec(name=name, type=type, payload={"value": value}, after=after)


def messages(steps: list[StepSpec]) -> list[tuple[str, str]]:
    return [(e.field, e.message) for e in check_steps(steps)]


def test_a_good_workflow_passes() -> None:
    assert check_steps([step("a"), step("b", "a", value="{{ a.result.value }}"), step("c", "a", "b")]) == []


def test_empty_too_many_bad_names_unknown_types_and_afters() -> None:
    assert messages([]) == [("steps", "a workflow needs at least one step")]
    many = [step(f"s{i}") for i in range(MAX_STEPS + 1)]
    assert messages(many) == [("steps", f"at most {MAX_STEPS} steps, not {MAX_STEPS + 1}")]
    assert check_steps([step(f"s{i}") for i in range(MAX_STEPS)]) == []
    assert messages([step("1a"), step("a.b"), step("x" * 65)]) == [
        ("steps.1a", "a step name is a letter or _, then letters, digits, _ or -"),
        ("steps.a.b", "a step name is a letter or _, then letters, digits, _ or -"),
        ("steps." + "x" * 65, "a step name is a letter or _, then letters, digits, _ or -"),
    ]
    assert messages([step("a", type="nope"), step("b", "ghost"), step("c", "c")]) == [
        ("steps.a.type", "unknown job type 'nope'"),
        ("steps.b.after", "no step named 'ghost'"),
        ("steps.c.after", "a step cannot run after itself"),
    ]


def test_payloads_without_templates_are_checked_against_their_type() -> None:
    bad = StepSpec(name="a", type="test_flaky", payload={"fail_times": "x"})
    assert messages([bad]) == [("steps.a.payload.fail_times", "Expected `int`, got `str`")]
    # With a template, the payload is checked once rendered.
    later = StepSpec(
        name="b", type="test_flaky", payload={"fail_times": "{{ a.result.value }}"}, after=("a",)
    )
    assert check_steps([step("a"), later]) == []


def test_cycles_are_refused() -> None:
    assert messages([step("a", "c"), step("b", "a"), step("c", "b")]) == [
        ("steps", "the steps' after lists form a cycle")
    ]
    assert messages([step("a"), step("b", "a", "d"), step("d", "b")]) == [
        ("steps", "the steps' after lists form a cycle")
    ]


def test_templates_name_only_ancestors_with_paths_of_bounded_depth() -> None:
    # A sibling, a descendant, an unknown step, a step of another workflow: all refused.
    steps = [
        step("a"),
        step("b", "a"),
        step("c", "a", value="{{ b.result.value }} {{ d.result }} {{ other.result.x }}"),
        step("d", "c", value="{{ a.result.value }}"),
    ]
    assert messages(steps) == [
        ("steps.c.payload", "{{ b.result.value }}: 'b' is not a step this one runs after"),
        ("steps.c.payload", "{{ d.result }}: 'd' is not a step this one runs after"),
        ("steps.c.payload", "{{ other.result.x }}: 'other' is not a step this one runs after"),
    ]
    # A root step has no ancestors: any template in it is refused.
    assert messages([step("a", value="{{ a.result }}")]) == [
        ("steps.a.payload", "{{ a.result }}: 'a' is not a step this one runs after")
    ]
    deep = "{{ a.result" + ".k" * 33 + " }}"
    assert messages([step("a"), step("b", "a", value=deep)]) == [
        ("steps.b.payload", "a template's path is at most 32 steps deep")
    ]


@PROPERTY
@given(st.lists(st.lists(st.integers(0, 29), max_size=4), min_size=1, max_size=30))
def test_any_graph_is_accepted_exactly_when_it_has_no_cycle(edges: list[list[int]]) -> None:
    after = {
        f"s{i}": tuple(sorted({f"s{j}" for j in deps if j < len(edges) and j != i}))
        for i, deps in enumerate(edges)
    }
    steps = [step(name, *deps) for name, deps in after.items()]
    cyclic = any(name in ancestors(after, name) for name in after)
    assert (check_steps(steps) == []) == (not cyclic)


def _row(name: str, *after: str, job: str | None = None, state: str = "waiting") -> SimpleNamespace:
    return SimpleNamespace(
        name=name, after=list(after), job_id="j" if job else None, job_status=job, state=state
    )


def test_blocked_and_cancelled_are_read_from_the_ancestors_jobs() -> None:
    rows = [
        _row("a", job="dead"),
        _row("b", job="succeeded"),
        _row("c", "a", "b"),
        _row("d", "c"),
        _row("e", "b"),
    ]
    states = _step_states(rows)  # type: ignore[arg-type]
    assert states == {"a": "dead", "b": "succeeded", "c": "blocked", "d": "blocked", "e": "waiting"}
    assert _shown_state("running", states.values()) == "dead"
    # A redrive puts the dead job back: its descendants wait again.
    rows[0] = _row("a", job="queued")
    assert _step_states(rows)["d"] == "waiting"  # type: ignore[arg-type]
    # A step's job cancelled by id: its descendants are cancelled, and so is the workflow once
    # nothing else can run.
    rows = [_row("a", job="cancelled"), _row("b", "a"), _row("c", "b")]
    states = _step_states(rows)  # type: ignore[arg-type]
    assert states == {"a": "cancelled", "b": "cancelled", "c": "cancelled"}
    assert _shown_state("running", states.values()) == "cancelled"
    assert _shown_state("running", ["succeeded", "cancelled", "running"]) == "running"
    assert _shown_state("succeeded", ["pruned"]) == "succeeded"
