"""A deployment's own job type: one module outside the package, declared with ``@job_type`` and named
in JOBYARD_JOB_MODULES, is validated by the API, run by a worker and dead-lettered like a built-in."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from tests.integration.conftest import Farm
from tests.services import ROOT, wait_for

#: What a deployment writes: exactly the public face of ``core``, nothing of the farm's insides.
MODULE = """
import msgspec
from core import JobContext, PermanentError, job_type


class Greet(msgspec.Struct, forbid_unknown_fields=True):
    name: str


@job_type("greet", payload=Greet, queue="default", max_retries=2, timeout_s=30)
def greet(ctx: JobContext, payload: Greet) -> dict:
    return {"hello": payload.name}


class Refusal(msgspec.Struct, forbid_unknown_fields=True):
    reason: str


@job_type("greet_refused", payload=Refusal, queue="default", max_retries=2)
def refuse(ctx: JobContext, payload: Refusal) -> dict:
    raise PermanentError(payload.reason, code="greeting_refused")
"""


def test_a_job_type_module_outside_the_package_is_validated_run_and_dead_lettered(
    farm: Farm, admin_key: str, tmp_path: Path
) -> None:
    deployment = tmp_path / "deployment"
    deployment.mkdir()
    (deployment / "greetings.py").write_text(MODULE)
    # The API, the scheduler and the worker are processes of their own: the module is on their path
    # and in their JOBYARD_JOB_MODULES, never imported by this test's process.
    farm.env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(deployment)])
    farm.settings = farm.settings.replace(job_modules=("greetings",), worker_queues=("default",))
    farm.worker(threads=2)
    farm.scheduler()
    _, base = farm.api()
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin_key}"}, timeout=10)

    bad = api.post("/v1/jobs", json={"type": "greet", "payload": {"name": 5, "colour": "red"}})
    assert bad.status_code == 422, bad.text
    details = {d["field"]: d["message"] for d in bad.json()["error"]["details"]}
    assert set(details) == {"payload.name", "payload.colour"}
    assert details["payload.colour"] == "is not a known field"

    good = api.post("/v1/jobs", json={"type": "greet", "payload": {"name": "Ada"}})
    assert good.status_code == 201, good.text
    assert good.json()["max_retries"] == 2  # the type's own policy
    refused = api.post("/v1/jobs", json={"type": "greet_refused", "payload": {"reason": "not today"}})
    assert refused.status_code == 201, refused.text

    def job(job_id: str, status: str) -> dict[str, Any] | None:
        found: dict[str, Any] = api.get(f"/v1/jobs/{job_id}").json()
        return found if found["status"] == status else None

    done = wait_for(lambda: job(good.json()["id"], "succeeded"), timeout=30, what="the greet job")
    assert done["result"] == {"hello": "Ada"}
    dead = wait_for(lambda: job(refused.json()["id"], "dead"), timeout=30, what="the refused job")
    assert dead["error"]["code"] == "greeting_refused"
    assert dead["error"]["message"] == "not today"
    assert dead["attempts"] == 1  # a PermanentError is not retried
    letters = api.get("/v1/dead-letters", params={"type": "greet_refused"}).json()["items"]
    assert [j["id"] for j in letters] == [refused.json()["id"]]
    api.close()
