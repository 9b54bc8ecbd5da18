"""Hostile input against sealing, through the API and a real worker process: strings that look
sealed where nothing is sealed, ciphertexts handed in by a client, and ciphertexts copied between
jobs at rest (a restored backup, a careless script). Each is refused with a 4xx at the API or fails
its own job with a clear code; the worker stays up, keeps running other jobs, and no number is ever
sent to or shown in clear from a ciphertext that was not the job's own.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from core.engine.job_types import payload_context
from core.messaging.outbound import TO_CONTEXT
from core.platform.crypto import DataCipher, data_cipher, generate_data_key, key_label
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import jobs
from tests.fakes.whatsapp import PHONE_NUMBER_ID, TOKEN, VERSION, FakeWhatsApp
from tests.integration.conftest import Farm, JobWaiter
from tests.legacy_sealing import seal_v1
from tests.services import TEST_DATA_KEY

VICTIM, OTHER, LEGACY = "+447700900901", "+447700900902", "+447700900903"


@pytest.fixture
def settings(settings: Settings, whatsapp: FakeWhatsApp) -> Settings:
    return settings.replace(
        whatsapp_api_base_url=whatsapp.url,
        whatsapp_api_version=VERSION,
        whatsapp_token=TOKEN,
        whatsapp_phone_number_id=PHONE_NUMBER_ID,
        quiet_hours="off",
        worker_queues=("unread_count", "whatsapp_message", "test_sealed_batch"),
    )


def _enqueue(api: TestClient[Any], type_: str, **payload: Any) -> str:
    r = api.post("/v1/jobs", json={"type": type_, "payload": payload})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _stored(settings: Settings, job_id: str) -> dict[str, Any]:
    with transaction(settings) as conn:
        payload: dict[str, Any] = conn.execute(
            sa.select(jobs.c.payload).where(jobs.c.id == uuid.UUID(job_id))
        ).scalar_one()
    return payload


def _restore(settings: Settings, job_id: str, **fields: str) -> None:
    """Write fields into a job's stored payload, as a restored backup or a careless script would."""
    with transaction(settings) as conn:
        for name, value in fields.items():
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == uuid.UUID(job_id))
                .values(payload=jobs.c.payload.op("||")(sa.func.jsonb_build_object(name, value)))
            )


def _real_ciphertext(api: TestClient[Any], settings: Settings, number: str) -> tuple[str, str]:
    """A real ciphertext of the farm's key, as someone might copy it out of a backup, and its job
    (cancelled, so it never runs)."""
    job_id = _enqueue(api, "test_sealed_batch", to=number)
    assert api.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    return _stored(settings, job_id)["to"], job_id


def test_ciphertexts_from_clients_are_refused_at_the_api(api: TestClient[Any], settings: Settings) -> None:
    real, job_id = _real_ciphertext(api, settings, VICTIM)
    for value in (real, seal_v1(TEST_DATA_KEY, VICTIM), "jy1:x", "jy2:abcdef12:AAAA"):
        for path, body in (
            ("/v1/jobs", {"type": "whatsapp_message", "payload": {"to": value, "text": "hi"}}),
            ("/v1/jobs", {"type": "test_sealed_batch", "payload": {"to": value}}),
            ("/v1/schedules", {"type": "test_sealed_batch", "payload": {"to": value}, "every_seconds": 3600}),
            ("/v1/opt-outs", {"to": value}),
        ):
            r = api.post(path, json=body)
            assert r.status_code == 422, (path, value, r.text)
            assert VICTIM[1:] not in r.text
    # A redrive's patch is client input too: a ciphertext in it is refused, and nothing changes.
    with transaction(settings) as conn:
        conn.execute(sa.update(jobs).where(jobs.c.id == uuid.UUID(job_id)).values(status="dead"))
    r = api.post(
        "/v1/dead-letters/redrive",
        json={"ids": [job_id], "reason": "r", "payload_patch": {"to": real}},
    )
    assert r.status_code == 422 and "looks like a sealed value" in r.text, r.text
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "dead"
    assert _stored(settings, job_id)["to"] == real


def test_sealed_looking_data_and_copied_ciphertexts_fail_only_their_own_job(
    api: TestClient[Any], farm: Farm, settings: Settings, whatsapp: FakeWhatsApp, wait_job: JobWaiter
) -> None:
    # Queued before the worker starts: the copied ciphertexts are written at rest in between.
    victim_job = _enqueue(api, "whatsapp_message", to=VICTIM, text="for the victim")
    assert api.post(f"/v1/jobs/{victim_job}/cancel").status_code == 200
    victims_to = _stored(settings, victim_job)["to"]

    # Not sealed fields: whatever they start with, they are data.
    plain = {
        "jy1": _enqueue(api, "unread_count", chat_id="jy1:x", user_id="u"),
        "jy2": _enqueue(api, "unread_count", chat_id="jy2:0000:AAAA", user_id="u"),
        "ciphertext": _enqueue(api, "unread_count", chat_id=victims_to, user_id="u"),
    }
    # Sealed fields holding a ciphertext that is not theirs.
    swapped = _enqueue(api, "whatsapp_message", to=OTHER, text="swapped recipient")
    # The victim's number under the farm's own key, but sealed as an outbound row's recipient.
    _restore(settings, swapped, to=data_cipher().seal(VICTIM, TO_CONTEXT))
    stranger = DataCipher(generate_data_key())
    unknown_key = _enqueue(api, "whatsapp_message", to=OTHER, text="unknown key")
    _restore(settings, unknown_key, to=stranger.seal(OTHER, payload_context("whatsapp_message", "to")))
    cross_type = _enqueue(api, "test_sealed_batch", to=OTHER)
    _restore(settings, cross_type, to=victims_to)
    # Sealed the way Jobyard did before issue 15, under the farm's key: it still opens and sends.
    legacy = _enqueue(api, "whatsapp_message", to=OTHER, text="legacy")
    _restore(settings, legacy, to=seal_v1(TEST_DATA_KEY, LEGACY))

    worker = farm.worker(processes=1, threads=2)
    for name, job_id in plain.items():
        job = wait_job(job_id)
        assert job["result"]["unread"] == 1, name
        assert job["payload"]["chat_id"] == _stored(settings, job_id)["chat_id"]  # shown as it is
    assert wait_job(plain["ciphertext"])["result"]["chat_id"] == victims_to  # never opened

    for job_id, key_id in ((swapped, data_cipher().key_id), (unknown_key, stranger.key_id)):
        dead = wait_job(job_id, "dead")
        assert dead["attempts"] == 1 and dead["error"]["code"] == "data_key_mismatch"
        assert dead["error"]["retryable"] is False and key_label(key_id) in dead["error"]["message"]
    assert "JOBYARD_DATA_KEYS_OLD" in wait_job(unknown_key, "dead")["error"]["message"]
    assert wait_job(cross_type, "dead")["error"]["code"] == "data_key_mismatch"
    wait_job(legacy)
    assert [r.body["to"] for r in whatsapp.requests()] == [LEGACY]

    # The worker is still up, and runs the next job.
    assert worker.alive()
    wait_job(_enqueue(api, "whatsapp_message", to=OTHER, text="after"))
    assert sorted(r.body["to"] for r in whatsapp.requests()) == sorted([LEGACY, OTHER])
    assert VICTIM[1:] not in worker.log()


def test_in_a_batch_the_job_that_does_not_open_fails_alone(
    api: TestClient[Any], farm: Farm, settings: Settings, wait_job: JobWaiter
) -> None:
    ids = [_enqueue(api, "test_sealed_batch", to=f"+4477009010{i:02d}") for i in range(20)]
    victim = _enqueue(api, "whatsapp_message", to=VICTIM, text="x")
    assert api.post(f"/v1/jobs/{victim}/cancel").status_code == 200
    _restore(settings, ids[7], to=_stored(settings, victim)["to"])  # bound to another type

    farm.worker(processes=1, threads=1)
    dead = wait_job(ids[7], "dead")
    assert dead["error"]["code"] == "data_key_mismatch" and dead["attempts"] == 1
    results = [wait_job(i)["result"] for n, i in enumerate(ids) if n != 7]
    assert all(r["opened"] for r in results)
    assert max(r["batch_size"] for r in results) > 1  # the others still ran together
