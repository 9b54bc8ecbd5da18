"""A workflow as asked for, and every reason it cannot be one: its steps, their ``after`` graph and
the templates in their payloads, checked before anything is written (core/engine/workflows.py runs
it)."""

from __future__ import annotations

import heapq
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.engine.job_types import FieldError, get_job_type, validate_payload
from core.engine.lanes import DEFAULT_PRIORITY
from core.engine.templates import MAX_PATH_DEPTH, Reference, references
from core.errors import UnknownJobType
from core.platform.tenants import DEFAULT_TENANT

#: Steps a workflow may have.
MAX_STEPS = 100
#: A step's name: a letter or `_`, then letters, digits, `_` or `-`; up to 64 characters.
STEP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True, slots=True)
class StepSpec:
    """A step as asked for: ``payload`` checked against its type where it holds no template."""

    name: str
    type: str
    payload: dict[str, Any]
    after: tuple[str, ...] = ()
    priority: int = DEFAULT_PRIORITY
    max_retries: int | None = None


@dataclass(frozen=True, slots=True)
class NewWorkflow:
    steps: Sequence[StepSpec]
    business_key: str | None = None
    idempotency_key: str | None = None
    tenant: str = DEFAULT_TENANT
    created_by: uuid.UUID | None = None
    request_id: str | None = None


def step_order(after: Mapping[str, Sequence[str]]) -> list[str] | None:
    """The steps in an order where each comes after those it names, otherwise in the order given;
    None if they form a cycle."""
    index = {name: i for i, name in enumerate(after)}
    waiting = {name: len(set(deps)) for name, deps in after.items()}
    successors: dict[str, list[str]] = {name: [] for name in after}
    for name, deps in after.items():
        for dep in set(deps):
            successors[dep].append(name)
    ready = [index[name] for name, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    names = list(after)
    order: list[str] = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for succ in successors[name]:
            waiting[succ] -= 1
            if waiting[succ] == 0:
                heapq.heappush(ready, index[succ])
    return order if len(order) == len(after) else None


def ancestors(after: Mapping[str, Sequence[str]], name: str) -> set[str]:
    """Every step ``name`` runs after, directly or through others."""
    seen: set[str] = set()
    todo = list(after.get(name, ()))
    while todo:
        step = todo.pop()
        if step not in seen:
            seen.add(step)
            todo.extend(after.get(step, ()))
    return seen


def check_steps(steps: Sequence[StepSpec]) -> list[FieldError]:
    """Every reason ``steps`` cannot be a workflow: empty or over MAX_STEPS, a bad name, an unknown
    type, an ``after`` naming no step, a cycle, a template naming a step that is not an ancestor or a
    path too deep, a payload without templates that does not fit its type."""
    if not steps:
        return [FieldError("steps", "a workflow needs at least one step")]
    if len(steps) > MAX_STEPS:
        return [FieldError("steps", f"at most {MAX_STEPS} steps, not {len(steps)}")]
    errors: list[FieldError] = []
    names = {s.name for s in steps}
    after = {s.name: tuple(a for a in s.after if a in names) for s in steps}
    for s in steps:
        at = f"steps.{s.name[:80]}"
        if not STEP_NAME.fullmatch(s.name):
            errors.append(FieldError(at, "a step name is a letter or _, then letters, digits, _ or -"))
        for dep in s.after:
            if dep not in names:
                errors.append(FieldError(f"{at}.after", f"no step named {dep[:80]!r}"))
            elif dep == s.name:
                errors.append(FieldError(f"{at}.after", "a step cannot run after itself"))
        try:
            job_type = get_job_type(s.type)
        except UnknownJobType:
            errors.append(FieldError(f"{at}.type", f"unknown job type {s.type[:100]!r}"))
            continue
        refs = list(references(s.payload))
        if not refs:
            errors.extend(validate_payload(job_type, s.payload, prefix=f"{at}.payload")[1])
            continue
        errors.extend(_check_refs(refs, ancestors(after, s.name), f"{at}.payload"))
    if not errors and step_order(after) is None:
        errors.append(FieldError("steps", "the steps' after lists form a cycle"))
    return errors


def _check_refs(refs: Iterable[Reference], reachable: set[str], at: str) -> list[FieldError]:
    errors = []
    for ref in refs:
        if ref.step not in reachable:
            errors.append(
                FieldError(
                    at, f"{{{{ {str(ref)[:120]} }}}}: {ref.step[:80]!r} is not a step this one runs after"
                )
            )
        elif len(ref.path) > MAX_PATH_DEPTH:
            errors.append(FieldError(at, f"a template's path is at most {MAX_PATH_DEPTH} steps deep"))
    return errors
