"""Rotating the data key while the farm runs: 10,000 sealed rows (jobs with a sealed `to` in every
state, opt-outs, outbound messages, and a few schedules), some in the format sealed before issue 15,
are moved under a new key by the real `jobyard data-key rotate` command while a worker sends and a
client enqueues. Nothing is lost: every row opens under the new key alone to its original value, and
the counts are the same. Opt-outs still hold afterwards, one recorded under both keys included. A
farm started with yet another key refuses to send, and says which key it lacks, in the job's error
and in its log.
"""

from __future__ import annotations

import subprocess
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from core.datakeys.reseal import pending_counts
from core.engine.job_types import open_payload, payload_context
from core.messaging.optouts import OPT_OUT_CONTEXT, add_opt_out
from core.messaging.outbound import BODY_TO_CONTEXT, TO_CONTEXT
from core.messaging.send import WHATSAPP_MESSAGE
from core.platform.crypto import DataCipher, data_cipher, generate_data_key, key_label, use_data_key
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import audit_log, jobs, opt_outs, outbound_messages, schedules
from tests.fakes.whatsapp import PHONE_NUMBER_ID, TOKEN, VERSION, FakeWhatsApp
from tests.integration.conftest import Farm, make_key
from tests.legacy_sealing import seal_v1
from tests.services import JOBYARD, TEST_DATA_KEY, settings_env, wait_for

OLD, NEW = TEST_DATA_KEY, generate_data_key()
JOBS, OPT_OUTS, OUTBOUND, SCHEDULES = 4000, 3000, 3000, 10
#: Opt-outs recorded a second time under the new key before the rotation (a STOP that reached a
#: process holding only the new key): the rotation must keep one row each, not trip the unique index.
TWICE = 5
STATES = ("dead", "succeeded", "cancelled", "scheduled")
FAR = datetime(2099, 1, 1, tzinfo=UTC)
PAYLOAD_TO = payload_context("whatsapp_message", "to")


def _number(block: int, i: int) -> str:
    return f"+44770{block}{i:05d}"


@pytest.fixture
def settings(settings: Settings, whatsapp: FakeWhatsApp) -> Settings:
    """The farm after the new key was rolled out: NEW seals, OLD still opens and matches."""
    return settings.replace(
        data_key=NEW,
        data_keys_old=(OLD,),
        whatsapp_api_base_url=whatsapp.url,
        whatsapp_api_version=VERSION,
        whatsapp_token=TOKEN,
        whatsapp_phone_number_id=PHONE_NUMBER_ID,
        quiet_hours="off",
        worker_queues=("whatsapp_message", "unread_count"),
    )


@pytest.fixture
def ring(settings: Settings) -> None:
    use_data_key(settings)  # this process reads and writes as the farm does


class Seeded:
    """The rows written under the old key before the rotation, and the number each one holds."""

    def __init__(self) -> None:
        self.jobs: dict[uuid.UUID, str] = {}
        self.schedules: dict[uuid.UUID, str] = {}
        self.outbound: dict[uuid.UUID, str] = {}
        self.opted_out: list[str] = []


def _seal(cipher: DataCipher, number: str, context: str, legacy: bool) -> str:
    return seal_v1(OLD, number) if legacy else cipher.seal(number, context)


def _seed(settings: Settings) -> Seeded:
    old, new = DataCipher(OLD), DataCipher(NEW)
    seeded = Seeded()
    job_rows, schedule_rows, outbound_rows, opt_out_rows = [], [], [], []
    for i in range(JOBS):
        number, state = _number(1, i), STATES[i % len(STATES)]
        row_id = uuid.uuid4()
        seeded.jobs[row_id] = number
        payload = {
            "to": _seal(old, number, PAYLOAD_TO, i % 4 == 0),
            "text": f"seed {i}",
            "respect_quiet_hours": True,
        }
        job_rows.append(
            {
                "id": row_id,
                "type": "whatsapp_message",
                "queue": "whatsapp_message",
                "status": state,
                "payload": payload,
                "max_retries": 5,
                "run_at": FAR if state == "scheduled" else datetime.now(UTC),
            }
        )
    for i in range(SCHEDULES):
        row_id = uuid.uuid4()
        seeded.schedules[row_id] = _number(4, i)
        schedule_rows.append(
            {
                "id": row_id,
                "type": "whatsapp_message",
                "payload": {"to": _seal(old, _number(4, i), PAYLOAD_TO, i % 2 == 0), "text": "weekly"},
                "every_seconds": 604800,
                "enabled": False,
                "start_at": FAR,
                "next_run_at": FAR,
            }
        )
    for i in range(OPT_OUTS):
        number = _number(2, i)
        seeded.opted_out.append(number)
        legacy = i % 4 == 0
        opt_out_rows.append(
            {
                "channel": "whatsapp",
                "address_hash": old.lookup_hash(number),
                "address_sealed": _seal(old, number, OPT_OUT_CONTEXT, legacy),
                "address_key_id": old.key_id,
                "source": "webhook",
            }
        )
    for number in seeded.opted_out[:TWICE]:
        opt_out_rows.append(
            {
                "channel": "whatsapp",
                "address_hash": new.lookup_hash(number),
                "address_sealed": new.seal(number, OPT_OUT_CONTEXT),
                "address_key_id": new.key_id,
                "source": "webhook",
            }
        )
    for i in range(OUTBOUND):
        number, row_id = _number(3, i), uuid.uuid4()
        seeded.outbound[row_id] = number
        legacy = i % 4 == 0
        outbound_rows.append(
            {
                "id": row_id,
                "job_id": None,
                "attempt": 1,
                "to_sealed": _seal(old, number, TO_CONTEXT, legacy),
                "to_hash": old.lookup_hash(number),
                "to_key_id": old.key_id,
                "kind": "text",
                "body": {"to": _seal(old, number, BODY_TO_CONTEXT, legacy), "type": "text"},
                "status": "sent",
            }
        )
    with transaction(settings) as conn:
        conn.execute(sa.insert(jobs), job_rows)
        conn.execute(sa.insert(schedules), schedule_rows)
        conn.execute(sa.insert(opt_outs), opt_out_rows)
        conn.execute(sa.insert(outbound_messages), outbound_rows)
    return seeded


class Load:
    """A client enqueueing all the while: sends to new numbers, sends to opted-out numbers (which
    must be refused), and unread counts."""

    def __init__(self, base: str, key: str, opted_out: list[str]) -> None:
        self.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        self.opted_out = opted_out
        self.sends: list[str] = []
        self.refused: list[str] = []
        self.counts: list[str] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _post(self, type_: str, payload: dict[str, Any]) -> str | None:
        r = self.client.post("/v1/jobs", json={"type": type_, "payload": payload})
        if r.status_code != 201:
            self.failures.append(f"{r.status_code} {r.text}")
            return None
        return str(r.json()["id"])

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            if (
                job := self._post("whatsapp_message", {"to": _number(5, i), "text": f"load {i}"})
            ) is not None:
                self.sends.append(job)
            if i % 3 == 0:
                stopped = {"to": self.opted_out[(i * 7) % len(self.opted_out)], "text": "must not go"}
                if (job := self._post("whatsapp_message", stopped)) is not None:
                    self.refused.append(job)
            if (
                job := self._post("unread_count", {"chat_id": "rotation", "user_id": f"u{i % 5}"})
            ) is not None:
                self.counts.append(job)
            i += 1

    def enqueued(self) -> int:
        return len(self.sends) + len(self.refused) + len(self.counts)


def _statuses(settings: Settings, ids: list[str]) -> dict[str, tuple[str, Any]]:
    with transaction(settings) as conn:
        rows = conn.execute(
            sa.select(jobs.c.id, jobs.c.status, jobs.c.error).where(
                jobs.c.id.in_([uuid.UUID(i) for i in ids])
            )
        ).all()
    return {str(r.id): (r.status, r.error) for r in rows}


def _all_finished(settings: Settings, ids: list[str]) -> bool:
    return all(s in ("succeeded", "dead") for s, _ in _statuses(settings, ids).values())


def _rotate(settings: Settings) -> subprocess.CompletedProcess[str]:
    return _data_key(settings, "rotate", "--yes", "--batch-size", "250", "--reason", "yearly rotation")


def _data_key(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JOBYARD, "data-key", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_rotation_under_load_loses_nothing_and_opt_outs_still_hold(
    settings: Settings, ring: None, farm: Farm, whatsapp: FakeWhatsApp, tmp_path: Path
) -> None:
    seeded = _seed(settings)
    assert sum(pending_counts_now(settings).values()) == JOBS + SCHEDULES + OPT_OUTS + OUTBOUND

    worker = farm.worker(processes=1, threads=4)
    _, base = farm.api()
    load = Load(base, make_key(settings, "jobs:write", "jobs:read"), seeded.opted_out)
    load.thread.start()
    try:
        wait_for(lambda: load.enqueued() >= 30, timeout=60, what="the load to start")
        before = load.enqueued()
        rotated = _rotate(settings)
        during = load.enqueued() - before
    finally:
        load.stop.set()
        load.thread.join(timeout=60)
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert "done: every sealed value and hash is under the current key" in rotated.stdout
    assert during > 0 and load.failures == []  # clients kept enqueueing while it ran

    everything = load.sends + load.refused + load.counts
    wait_for(lambda: _all_finished(settings, everything), timeout=180, interval=0.5, what="the load's jobs")
    statuses = _statuses(settings, everything)
    assert {statuses[j][0] for j in load.sends + load.counts} == {"succeeded"}
    assert {(statuses[j][0], statuses[j][1]["code"]) for j in load.refused} == {("dead", "opted_out")}
    sent_to = {r.body["to"] for r in whatsapp.requests()}
    assert sent_to.isdisjoint(seeded.opted_out) and len(sent_to) == len(load.sends)

    # Under the new key alone, every row opens to what it held; nothing was lost or added.
    use_data_key(settings.replace(data_keys_old=()))
    _check_every_row_opens_under_the_new_key(
        settings, seeded, len(load.sends) + len(load.refused), len(load.sends)
    )
    assert pending_counts_now(settings) == {
        "jobs": 0,
        "job_history": 0,
        "schedules": 0,
        "opt_outs": 0,
        "outbound_messages": 0,
        "tenant_whatsapp": 0,
        "tenant_llm": 0,
        "whatsapp_conversations": 0,
        "webhook_endpoints": 0,
    }
    with transaction(settings) as conn:
        entry = conn.execute(sa.select(audit_log).where(audit_log.c.action == "data_key_rotate")).one()
    assert entry.reason == "yearly rotation" and entry.selection["key"] == key_label(DataCipher(NEW).key_id)
    assert entry.counts["moved_jobs"] == JOBS and entry.counts["moved_opt_outs"] == OPT_OUTS
    assert entry.counts["merged_opt_outs"] == TWICE and entry.counts["remaining"] == 0

    # Running it again finds nothing to do, and the status says the old key is no longer needed.
    again = _rotate(settings)
    assert again.returncode == 0 and "nothing to rotate" in again.stdout, again.stdout + again.stderr
    status = _data_key(settings.replace(data_keys_old=()), "status").stdout
    assert (
        "not yet under the current key: jobs 0, job_history 0, schedules 0, opt_outs 0, outbound_messages 0"
        in status
    )
    assert "MISSING" not in status

    # The old key can go: opt-outs hold for a farm that holds only the new key, the twice-recorded
    # and the older-format ones included.
    worker.stop()
    (tmp_path / "new-only").mkdir()
    new_only = Farm(settings.replace(data_keys_old=()), tmp_path / "new-only")
    try:
        new_only.worker(processes=1, threads=2)
        _, base = new_only.api()
        client = Load(base, make_key(settings, "jobs:write"), seeded.opted_out)
        refused = [
            client._post("whatsapp_message", {"to": n, "text": "no"}) for n in seeded.opted_out[: TWICE + 4]
        ]
        ids = [r for r in refused if r is not None]
        wait_for(lambda: _all_finished(settings, ids), timeout=60, what="sends to opted-out numbers")
        assert {(s, e["code"]) for s, e in _statuses(settings, ids).values()} == {("dead", "opted_out")}
        client.client.close()
    finally:
        new_only.discard()
        load.client.close()


def pending_counts_now(settings: Settings) -> dict[str, int]:
    with transaction(settings) as conn:
        return pending_counts(conn, data_cipher())


def _check_every_row_opens_under_the_new_key(
    settings: Settings, seeded: Seeded, load_jobs: int, load_sends: int
) -> None:
    ring = data_cipher()
    new = DataCipher(NEW)
    assert ring.key_ids == {new.key_id}
    with transaction(settings) as conn:
        job_rows = conn.execute(
            sa.select(jobs.c.id, jobs.c.payload).where(jobs.c.type == "whatsapp_message")
        ).all()
        schedule_rows = conn.execute(sa.select(schedules.c.id, schedules.c.payload)).all()
        opt_out_rows = conn.execute(sa.select(opt_outs)).all()
        outbound_rows = conn.execute(sa.select(outbound_messages)).all()
    opened = {r.id: open_payload(WHATSAPP_MESSAGE, r.payload)["to"] for r in job_rows}
    assert {i: opened[i] for i in seeded.jobs} == seeded.jobs
    assert all(ring.is_current(r.payload["to"]) for r in job_rows)
    assert {r.id: open_payload(WHATSAPP_MESSAGE, r.payload)["to"] for r in schedule_rows} == seeded.schedules

    assert len(opt_out_rows) == OPT_OUTS
    numbers = [ring.open(r.address_sealed, OPT_OUT_CONTEXT) for r in opt_out_rows]
    assert sorted(numbers) == sorted(seeded.opted_out)
    assert all(
        r.address_key_id == new.key_id and r.address_hash == new.lookup_hash(n)
        for r, n in zip(opt_out_rows, numbers, strict=True)
    )

    assert len(job_rows) == JOBS + load_jobs
    assert len(outbound_rows) == OUTBOUND + load_sends
    for r in outbound_rows:
        number = ring.open(r.to_sealed, TO_CONTEXT)
        assert ring.open(r.body["to"], BODY_TO_CONTEXT) == number
        assert r.to_key_id == new.key_id and r.to_hash == new.lookup_hash(number)
        if r.id in seeded.outbound:
            assert number == seeded.outbound[r.id]


def test_a_farm_with_another_key_refuses_to_send_and_says_which_key_it_lacks(
    settings: Settings, ring: None, whatsapp: FakeWhatsApp, tmp_path: Path
) -> None:
    # Opt-outs recorded by the farm under its key...
    with transaction(settings) as conn:
        add_opt_out(conn, _number(2, 1), "webhook")
    # ...then a farm started by mistake with a different key.
    other = settings.replace(data_key=generate_data_key(), data_keys_old=())
    farm = Farm(other, tmp_path)
    try:
        worker = farm.worker(processes=1, threads=2)
        _, base = farm.api()
        client = Load(base, make_key(settings, "jobs:write"), [])
        job = client._post(
            "whatsapp_message", {"to": _number(6, 1), "text": "to someone who may have said STOP"}
        )
        assert job is not None

        def refused() -> tuple[str, dict[str, Any]] | None:
            status, error = _statuses(settings, [job])[job]
            return (status, error) if error is not None else None

        status, error = wait_for(refused, timeout=60, what="the send to be refused")
        assert status == "retrying"  # the fix is a key; then the job goes on
        missing = key_label(DataCipher(NEW).key_id)
        assert f"MISSING: {missing}" in _data_key(other, "status").stdout
        assert error["code"] == "data_key_unknown"
        assert (
            f"opt-outs are hashed under data key {missing}, which this process does not hold"
            in error["message"]
        )
        assert "JOBYARD_DATA_KEYS_OLD" in error["message"]
        assert whatsapp.requests() == []
        wait_for(lambda: '"event": "data_key_unknown"' in worker.log(), timeout=10, what="the log line")
        line = next(x for x in worker.log().splitlines() if '"event": "data_key_unknown"' in x)
        assert missing in line and '"level": "error"' in line
        client.client.close()
    finally:
        farm.discard()
