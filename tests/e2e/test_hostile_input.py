"""Hostile and careless input against a running farm: nothing a client sends stops, stalls or loops a
farm process.

`jobyard up` runs the API, a worker and the scheduler under its supervisor, pointed at this module's
own Postgres database and Redis namespace (DATABASE_URL, REDIS_URL): a child that dies would be
logged as `process_exited` and restarted, which the checks below would see. Each case sends what a
careless or hostile client could, and checks the answer: a clear 4xx with a code, or the one item
failed on its own with a code (a dead letter, a disabled schedule). After every case no farm process
has exited or restarted. At the end, a job due in 2 s still runs on time and a recurring schedule
that ran through all of it still fires.

Adding a case (sealed-prefix strings, floods of bad keys, ...): write a function that takes the
``HostileFarm`` and decorate it with ``@case``; it runs against the same farm, followed by the same
checks. ``farm.refused(...)`` checks a 4xx answer, ``farm.sql(...)`` writes rows as an older release
left them, ``farm.client()`` is an httpx client with the admin key.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from core.launch.roles import queues_except
from core.platform.db import dispose_engines, transaction
from core.platform.settings import Settings
from tests.e2e.conftest import FIGURES
from tests.services import JOBYARD, ROOT, TEST_DATA_KEY, TestServices, settings_env, wait_for

UNREAD = {"type": "unread_count", "payload": {"chat_id": "c", "user_id": "hostile"}}
#: How late a job due in 2 s may start after every case, on a loaded 2-core test machine.
ON_TIME_TOLERANCE_S = 1.5
#: The farm's children under `jobyard up` here (no embeddings or scrape queue: no model, no browser).
CHILDREN = ("api", "worker", "scheduler")
#: Log events that mean a loop caught what an item should have: a bug even if nothing exited.
LOOP_FAILURES = ("scheduler_step_failed", "scheduler_loop_failed", "unhandled_error")


@dataclass
class HostileFarm:
    settings: Settings
    base: str
    key: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    #: The recurring schedule created at the start, which must still fire at the end.
    heartbeat: dict[str, Any] = field(default_factory=dict)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.key}"}, timeout=15)

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # two processes' lines interleaved: not one of ours to check
        return found

    def refused(
        self, response: httpx.Response, status: int, code: str, fields: list[str] | None = None
    ) -> dict[str, Any]:
        """Check a clear 4xx: the status, the error code, and (for 422) the fields named."""
        assert response.status_code == status, (response.request.url, response.text)
        error: dict[str, Any] = response.json()["error"]
        assert error["code"] == code and error["message"], error
        if fields is not None:
            assert [d["field"] for d in error["details"]] == fields, error["details"]
        return error

    def sql(self, statement: str, **params: Any) -> None:
        """Write rows directly, as an older release (or an operator) left them."""
        with transaction(self.settings) as conn:
            conn.execute(sa.text(statement), params)

    def assert_intact(self) -> None:
        """No child exited or was restarted: each started once, and each of those processes lives."""
        assert self.proc.poll() is None, "jobyard up exited"
        events = self.events()
        exited = [e for e in events if e.get("event") == "process_exited"]
        assert exited == [], exited
        started: dict[str, list[int]] = {}
        for e in events:
            if e.get("event") == "process_started":
                started.setdefault(e["child"], []).append(e["pid"])
        assert sorted(started) == sorted(CHILDREN) and all(len(p) == 1 for p in started.values()), started
        for (pid,) in started.values():
            os.kill(pid, 0)  # raises if the process is gone
        caught = [e for e in events if e.get("event") in LOOP_FAILURES]
        assert caught == [], caught


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def farm(services: TestServices, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileFarm]:
    home = tmp_path_factory.mktemp("hostile") / "home"
    port = _free_port()
    with services.database() as url:
        base = Settings(job_modules=("tests.jobtypes",))
        settings = Settings(
            database_url=url,
            redis_url=services.redis_url,
            redis_namespace=f"jyh{uuid.uuid4().hex[:8]}",
            job_modules=("tests.jobtypes",),
            scheduler_interval_s=0.05,
            # Rows an older release stored (rows_stored_before_the_bounds) are failed within a second,
            # not within the default half minute.
            out_of_range_interval_s=1.0,
            data_key=TEST_DATA_KEY,
            worker_queues=queues_except(base, ("scrape", "embeddings")),
            home=home,
            api_port=port,
        )
        log_path = home.parent / "up.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                [*JOBYARD, "up", "--port", str(port)],
                env=settings_env(settings),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:

            def up() -> bool:
                assert proc.poll() is None, log_path.read_text()
                return "Jobyard is up." in log_path.read_text()

            wait_for(up, timeout=120, interval=0.2, what="jobyard up")
            key = (home / "admin.key").read_text().strip()
            farm = HostileFarm(settings, f"http://127.0.0.1:{port}", key, proc, log_path)
            with farm.client() as client:
                r = client.post(
                    "/v1/schedules", json={**UNREAD, "every_seconds": 2, "business_key": "heartbeat"}
                )
                assert r.status_code == 201, r.text
                farm.heartbeat = r.json()
            yield farm
        finally:
            proc.send_signal(2)  # Ctrl-C, as a user stops it
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            dispose_engines()


# -- cases ---------------------------------------------------------------------------------------

CASES: list[Callable[[HostileFarm], None]] = []


def case(fn: Callable[[HostileFarm], None]) -> Callable[[HostileFarm], None]:
    CASES.append(fn)
    return fn


YEAR_10000 = "9999-12-31T23:59:59-14:00"  # valid ISO 8601; in UTC it is year 10000


def _iso(moment: datetime) -> str:
    return moment.isoformat()


@case
def run_at_past_year_9999(farm: HostileFarm) -> None:
    with farm.client() as c:
        farm.refused(
            c.post("/v1/jobs", json={**UNREAD, "run_at": YEAR_10000}), 422, "validation_error", ["run_at"]
        )
        farm.refused(
            c.post("/v1/jobs/batch", json={"jobs": [UNREAD, {**UNREAD, "run_at": YEAR_10000}]}),
            422,
            "validation_error",
            ["jobs[1].run_at"],
        )


@case
def other_out_of_range_times(farm: HostileFarm) -> None:
    now = datetime.now(UTC)
    with farm.client() as c:
        for moment in (
            "0001-01-01T00:00:00+14:00",  # year 0 in UTC
            "1970-01-01T00:00:00Z",  # a zero epoch: more than ten years ago
            _iso(now + timedelta(days=3651)),
            _iso(now - timedelta(days=3651)),
        ):
            farm.refused(
                c.post("/v1/jobs", json={**UNREAD, "run_at": moment}), 422, "validation_error", ["run_at"]
            )
        for bad in (
            "9999-99-99T00:00:00Z",
            "10000-01-01T00:00:00Z",
            "2026-01-01T00:00:00",
            "tomorrow",
            1e300,
        ):
            r = c.post("/v1/jobs", json={**UNREAD, "run_at": bad})
            assert r.status_code in (400, 422), r.text
        farm.refused(
            c.post("/v1/jobs", json={**UNREAD, "delay_seconds": 10**12}),
            422,
            "validation_error",
            ["delay_seconds"],
        )
        for params in ({"created_after": YEAR_10000}, {"created_before": "0001-01-01T00:00:00+14:00"}):
            assert c.get("/v1/jobs", params=params).status_code in (200, 422)


@case
def reschedule_out_of_range(farm: HostileFarm) -> None:
    with farm.client() as c:
        job = c.post("/v1/jobs", json={**UNREAD, "delay_seconds": 3600}).json()
        farm.refused(
            c.post(f"/v1/jobs/{job['id']}/reschedule", json={"run_at": YEAR_10000}),
            422,
            "validation_error",
            ["run_at"],
        )
        assert c.get(f"/v1/jobs/{job['id']}").json()["status"] == "scheduled"  # still readable
        assert c.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"  # and cancellable


@case
def sequence_anchor_and_offsets_out_of_range(farm: HostileFarm) -> None:
    step = {"after_seconds": 0, **UNREAD}
    nine_years = _iso(datetime.now(UTC) + timedelta(days=9 * 365))
    with farm.client() as c:
        body = {"business_key": "hostile-seq", "anchor_at": YEAR_10000, "steps": [step]}
        farm.refused(c.post("/v1/sequences", json=body), 422, "validation_error", ["anchor_at"])
        far = {**body, "anchor_at": nine_years, "steps": [{**step, "after_seconds": 3 * 365 * 86400}]}
        farm.refused(c.post("/v1/sequences", json=far), 422, "validation_error", ["steps[0].after_seconds"])
        assert c.get("/v1/jobs", params={"business_key": "hostile-seq"}).json()["items"] == []


@case
def never_firing_cron(farm: HostileFarm) -> None:
    with farm.client() as c:
        for cron in ("0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 1 1 * 0 1990"):
            farm.refused(
                c.post("/v1/schedules", json={**UNREAD, "cron": cron}), 422, "validation_error", ["cron"]
            )
        for cron in ("@reboot", "61 * * * *", "* * * *", "L L L L L", "*/0 * * * *", "0 0 0 0 0"):
            farm.refused(c.post("/v1/schedules", json={**UNREAD, "cron": cron}), 422, "validation_error")
        path = f"/v1/schedules/{farm.heartbeat['id']}"
        farm.refused(c.patch(path, json={"cron": "0 0 31 2 *"}), 422, "validation_error", ["cron"])
        assert c.get(path).json()["every_seconds"] == 2  # untouched


@case
def bogus_timezones(farm: HostileFarm) -> None:
    every = {**UNREAD, "every_seconds": 60}
    with farm.client() as c:
        for zone in (
            "America",
            "../etc",
            "",
            "x" * 1000,
            "Europe/",
            "/etc/localtime",
            "tzdata.zi",
            "UTC\u0000",
        ):
            farm.refused(
                c.post("/v1/schedules", json={**every, "timezone": zone}),
                422,
                "validation_error",
                ["timezone"],
            )
            farm.refused(
                c.post("/v1/schedules", json={**UNREAD, "cron": "0 8 * * *", "timezone": zone}),
                422,
                "validation_error",
                ["timezone"],
            )
        path = f"/v1/schedules/{farm.heartbeat['id']}"
        farm.refused(c.patch(path, json={"timezone": "America"}), 422, "validation_error", ["timezone"])


@case
def schedule_start_out_of_range(farm: HostileFarm) -> None:
    with farm.client() as c:
        for start in (YEAR_10000, "0001-01-01T00:00:00+14:00"):
            farm.refused(
                c.post("/v1/schedules", json={**UNREAD, "every_seconds": 60, "start_at": start}),
                422,
                "validation_error",
                ["start_at"],
            )


@case
def a_schedules_next_slot_key_with_another_payload(farm: HostileFarm) -> None:
    start = datetime.now(UTC) + timedelta(seconds=2)
    with farm.client() as c:
        r = c.post(
            "/v1/schedules",
            json={**UNREAD, "every_seconds": 3600, "start_at": start.isoformat(), "business_key": "slot-key"},
        )
        schedule = r.json()
        slot = datetime.fromisoformat(schedule["next_run_at"])
        taken = c.post(
            "/v1/jobs",
            json={
                "type": "unread_count",
                "payload": {"chat_id": "not-the-schedules", "user_id": "mallory"},
                "idempotency_key": f"schedule:{schedule['id']}:{slot.isoformat()}",
                "delay_seconds": 3600,
            },
        )
        assert taken.status_code == 201, taken.text  # an ordinary key of the client's own
        fired = wait_for(
            lambda: c.get("/v1/jobs", params={"business_key": "slot-key"}).json()["items"],
            timeout=20,
            what="the schedule to fire its slot",
        )
        assert [j["payload"]["user_id"] for j in fired] == ["hostile"]
        assert c.get(f"/v1/schedules/{schedule['id']}").json()["disabled_code"] is None
        c.delete(f"/v1/schedules/{schedule['id']}")


@case
def rows_stored_before_the_bounds(farm: HostileFarm) -> None:
    """A job due in year 10000 and a schedule starting then, as the API stored them before the fix:
    before it, every scheduler died on them and crash-looped. Now each fails alone, with a code."""
    job_id, schedule_id = uuid.uuid4(), uuid.uuid4()
    payload = json.dumps(UNREAD["payload"])
    farm.sql(
        "INSERT INTO jobs (id, type, queue, status, payload, max_retries, run_at) VALUES "
        "(:id, 'unread_count', 'unread_count', 'scheduled', CAST(:payload AS jsonb), 3, CAST(:at AS timestamptz))",
        id=job_id,
        payload=payload,
        at=YEAR_10000,
    )
    farm.sql(
        "INSERT INTO schedules (id, type, payload, every_seconds, start_at, next_run_at) VALUES "
        "(:id, 'unread_count', CAST(:payload AS jsonb), 60, CAST(:at AS timestamptz), CAST(:at AS timestamptz))",
        id=schedule_id,
        payload=payload,
        at=YEAR_10000,
    )
    with farm.client() as c:
        r = c.get(f"/v1/jobs/{job_id}")
        if r.status_code == 409:  # until the scheduler's next look, a clear answer, not "NUL characters"
            farm.refused(r, 409, "unreadable_value")
        job = wait_for(
            lambda: (j := c.get(f"/v1/jobs/{job_id}")).status_code == 200 and j.json(),
            timeout=45,
            what="the scheduler to fail the year-10000 job",
        )
        assert (job["status"], job["error"]["code"]) == ("dead", "run_at_out_of_range")
        schedule = c.get(f"/v1/schedules/{schedule_id}").json()
        assert (schedule["enabled"], schedule["disabled_code"]) == (False, "time_out_of_range")


@case
def a_schedule_that_cannot_fire(farm: HostileFarm) -> None:
    """After a deploy: a schedule's job type is gone, another's stored payload no longer validates."""
    with farm.client() as c:
        made = [
            c.post("/v1/schedules", json={**UNREAD, "every_seconds": 1, "business_key": f"broken-{i}"}).json()
            for i in range(2)
        ]
        farm.sql("UPDATE schedules SET type = 'removed_in_a_deploy' WHERE id = :id", id=made[0]["id"])
        farm.sql("""UPDATE schedules SET payload = '{"chat_id": 5}' WHERE id = :id""", id=made[1]["id"])
        for schedule, code in zip(made, ("unknown_job_type", "payload_invalid"), strict=True):
            shown = wait_for(
                lambda s=schedule, code=code: (
                    (x := c.get(f"/v1/schedules/{s['id']}").json())["disabled_code"] == code and x
                ),
                timeout=20,
                what=f"the schedule disabled with {code}",
            )
            assert shown["enabled"] is False and shown["disabled_reason"]


@case
def hostile_schedule_rules(farm: HostileFarm) -> None:
    with farm.client() as c:
        for body in (
            {**UNREAD, "every_seconds": 0},
            {**UNREAD, "every_seconds": -5},
            {**UNREAD, "every_seconds": 10**15},
            {**UNREAD, "every_seconds": 5, "cron": "* * * * *"},
            {**UNREAD, "cron": "x" * 10_000},
            {**UNREAD, "cron": "* * * * *", "timezone": None},
        ):
            r = c.post("/v1/schedules", json=body)
            assert 400 <= r.status_code < 500 and r.json()["error"]["code"], (body, r.text)


def _wait_final(c: httpx.Client, job_id: str) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        job: dict[str, Any] = c.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in ("succeeded", "dead", "cancelled") else None

    return wait_for(final, timeout=30, what=f"job {job_id} to end")  # type: ignore[no-any-return]


@case
def sealed_prefix_strings_are_data(farm: HostileFarm) -> None:
    """Strings that start like sealed values, in fields that are not sealed, are plain data: opened
    never, stored and returned as sent. A ciphertext copied from another job's sealed field included."""
    with farm.client() as c:
        sealed = c.post("/v1/jobs", json={"type": "test_sealed_batch", "payload": {"to": "+447700900123"}})
        assert sealed.status_code == 201, sealed.text
        _wait_final(c, sealed.json()["id"])
        with transaction(farm.settings) as conn:
            ciphertext = conn.execute(
                sa.text("SELECT payload->>'to' FROM jobs WHERE id = :id"), {"id": sealed.json()["id"]}
            ).scalar_one()
        assert ciphertext.startswith("jy2:")
        for chat_id in ("jy1:x", "jy2:", "jy2:deadbeef:AAAA", "jy1:00000000:" + "A" * 60, ciphertext):
            r = c.post(
                "/v1/jobs", json={"type": "unread_count", "payload": {"chat_id": chat_id, "user_id": "u"}}
            )
            assert r.status_code == 201, r.text
            job = _wait_final(c, r.json()["id"])
            assert job["status"] == "succeeded" and job["result"]["chat_id"] == chat_id, job


@case
def ciphertext_as_a_sealed_field_is_refused(farm: HostileFarm) -> None:
    with farm.client() as c:
        for value in ("jy1:x", "jy2:deadbeef:AAAA", "jy2:00:00", "jy9:x"):
            r = c.post("/v1/jobs", json={"type": "test_sealed_batch", "payload": {"to": value}})
            farm.refused(r, 422, "validation_error", ["payload.to"])


@case
def ciphertext_moved_between_fields_at_rest(farm: HostileFarm) -> None:
    """A sealed value copied at rest into another job type's sealed field (a restored backup, a hand
    edit) does not open there: that job alone goes dead with data_key_mismatch, and the victim's
    number is never handed to its handler."""
    with farm.client() as c:
        source = c.post("/v1/jobs", json={"type": "test_sealed_batch", "payload": {"to": "+447700900456"}})
        target = c.post(
            "/v1/jobs",
            json={
                "type": "test_leaky",
                "payload": {"to": "+15550100", "text": "t", "api_key": "k"},
                "delay_seconds": 3600,
            },
        )
        assert source.status_code == target.status_code == 201, (source.text, target.text)
        farm.sql(
            "UPDATE jobs SET payload = jsonb_set(jobs.payload, '{to}', src.payload->'to'), run_at = now() "
            "FROM jobs AS src WHERE jobs.id = :target AND src.id = :source",
            target=target.json()["id"],
            source=source.json()["id"],
        )
        job = _wait_final(c, target.json()["id"])
        assert job["status"] == "dead" and job["error"]["code"] == "data_key_mismatch", job
        assert job["attempts"] == 1, job
        after = c.post("/v1/jobs", json=UNREAD)
        assert _wait_final(c, after.json()["id"])["status"] == "succeeded"


@case
def request_bodies_that_mean_something_else(farm: HostileFarm) -> None:
    with farm.client() as c:
        farm.refused(
            c.post(
                "/v1/jobs", json={"type": "unread_count", "payload": {"chat_id": "a\x00b", "user_id": "u"}}
            ),
            400,
            "unstorable_value",
        )
        deep: Any = "x"
        for _ in range(200):
            deep = [deep]
        r = c.post("/v1/jobs", json={**UNREAD, "payload": {"chat_id": "c", "user_id": "u", "x": deep}})
        assert r.status_code == 400 and r.json()["error"]["code"], r.text
        farm.refused(
            c.post("/v1/jobs", json={"type": "no_such_type", "payload": {}}), 422, "validation_error"
        )
        r = c.post("/v1/jobs", content=b"\xff\xfe{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
        key = f"hostile-{uuid.uuid4()}"
        first = c.post("/v1/jobs", json={**UNREAD, "idempotency_key": key})
        assert first.status_code == 201, first.text
        other = {
            "type": "unread_count",
            "payload": {"chat_id": "other", "user_id": "u"},
            "idempotency_key": key,
        }
        farm.refused(c.post("/v1/jobs", json=other), 409, "idempotency_conflict")
        r = c.post("/v1/jobs", content=b"{" + b" " * (9 * 1024 * 1024) + b"}")
        assert r.status_code == 413, r.status_code


@case
def a_flood_of_bad_keys(farm: HostileFarm) -> None:
    """Random keys of a real key's shape, malformed keys and forged X-Forwarded-For headers, from many
    connections: each answered 401 or 429, and the farm's own key keeps working meanwhile."""
    import concurrent.futures
    import secrets

    def hammer(n: int) -> list[int]:
        statuses = []
        with httpx.Client(base_url=farm.base, timeout=15) as anon:
            for i in range(n):
                key = "jy_" + secrets.token_urlsafe(24) if i % 3 else "not-a-key-" + "x" * (i % 500)
                r = anon.post(
                    "/v1/jobs",
                    json=UNREAD,
                    headers={
                        "Authorization": f"Bearer {key}",
                        "X-Forwarded-For": f"10.0.{i % 250}.{n % 250}",
                    },
                )
                statuses.append(r.status_code)
        return statuses

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        flood = pool.map(hammer, [125] * 16)
        with farm.client() as c:
            during = [c.post("/v1/jobs", json=UNREAD).status_code for _ in range(20)]
        answered = [s for batch in flood for s in batch]
    assert len(answered) == 2000 and set(answered) <= {401, 429}, sorted(set(answered))
    assert 429 in answered, "the per-address limit never refused the flood"
    assert during == [201] * 20, during


@pytest.mark.parametrize("hostile", CASES, ids=[fn.__name__ for fn in CASES])
def test_hostile_input_is_refused_or_fails_alone(
    farm: HostileFarm, hostile: Callable[[HostileFarm], None]
) -> None:
    hostile(farm)
    farm.assert_intact()


def test_afterwards_the_farm_runs_on_time_and_schedules_still_fire(farm: HostileFarm) -> None:
    after_cases = datetime.now(UTC)
    with farm.client() as c:
        job = c.post("/v1/jobs", json={**UNREAD, "delay_seconds": 2}).json()
        done = wait_for(
            lambda: (j := c.get(f"/v1/jobs/{job['id']}").json())["status"] == "succeeded" and j,
            timeout=20,
            what="the job due in 2 s",
        )
        late_s = (
            datetime.fromisoformat(done["started_at"]) - datetime.fromisoformat(done["run_at"])
        ).total_seconds()
        assert -0.05 <= late_s <= ON_TIME_TOLERANCE_S, late_s

        def fired_since() -> list[dict[str, Any]]:
            items = c.get("/v1/jobs", params={"business_key": "heartbeat", "limit": 500}).json()["items"]
            return [j for j in items if datetime.fromisoformat(j["created_at"]) > after_cases]

        wait_for(fired_since, timeout=15, what="the recurring schedule to fire again")
        heartbeat = c.get(f"/v1/schedules/{farm.heartbeat['id']}").json()
        assert heartbeat["enabled"] is True and heartbeat["disabled_code"] is None
    farm.assert_intact()
    FIGURES.append(
        ("hostile input", {"cases": len(CASES), "job_due_in_2s_started_late_by_s": round(late_s, 3)})
    )
