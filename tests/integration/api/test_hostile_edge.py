"""Hostile input at the edge, against real API processes: floods of bad keys, forged X-Forwarded-For,
huge and odd headers, lookups that cannot take the pool, statements and locks that cannot hang a
request, errors that do not show secrets to readers, and the /schema viewers off by default.

Each case answers a clear 4xx (or a 503 with Retry-After), and the API process stays up and keeps
serving a good client."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from control_api.headers import DOCS_CSP, HSTS, STRICT_CSP
from core.engine.retry import error_record
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import jobs
from tests.integration.conftest import Farm, JobWaiter, make_key

UNREAD = {"type": "unread_count", "payload": {"chat_id": "c1", "user_id": "u1"}}


def _random_key() -> str:
    return "jy_" + secrets.token_urlsafe(24)


def _auth(secret: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", **headers}


def _metric(base: str, ops_key: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{base}/metrics", headers=_auth(ops_key), timeout=10).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    found = re.search(rf"^{name}\{{{re.escape(wanted)}\}} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _until_refused(send: Callable[[int], httpx.Response], most: int) -> list[int]:
    """Statuses of ``send(i)`` until the first 429 (a refused request is held back up to a second)."""
    statuses: list[int] = []
    for i in range(most):
        statuses.append(send(i).status_code)
        if statuses[-1] == 429:
            break
    return statuses


def _lookups(base: str, ops_key: str) -> float:
    return _metric(base, ops_key, "jobyard_api_key_lookups_total", result="not_live")


def test_a_flood_of_bad_keys_costs_one_lookup_per_key_then_the_address_is_refused(
    settings: Settings, farm: Farm, admin_key: str
) -> None:
    farm.settings = settings.replace(auth_failures_per_s=0.2, auth_failures_burst=30)
    proc, base = farm.api()
    good = make_key(settings, "jobs:write", name="good")
    stranger = make_key(settings, "jobs:read", name="stranger")
    started = time.monotonic()
    with httpx.Client(base_url=base, timeout=10) as client:
        # The good client and the operator are seen first, so this process knows their keys.
        assert client.post("/v1/jobs", json=UNREAD, headers=_auth(good)).status_code == 201
        lookups = _lookups(base, admin_key)

        # Malformed keys: refused from their shape alone, no lookup.
        malformed = [
            "nope",
            "jy_short",
            "jy_" + "A" * 31 + "!",
            "jy_" + "A" * 33,
            "x" * 60_000,
            "jy_" + "-" * 31 + ".",
        ]
        for secret in malformed:
            r = client.get("/v1/jobs", headers=_auth(secret))
            assert r.status_code == 401 and "malformed" in r.json()["error"]["message"], (secret[:20], r.text)
        r = client.get("/v1/jobs")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert _lookups(base, admin_key) == lookups

        # Unknown keys of the right shape: one lookup each, however often they come back.
        unknown = [_random_key() for _ in range(5)]
        for _ in range(3):
            for secret in unknown:
                r = client.get("/v1/jobs", headers=_auth(secret))
                assert r.status_code == 401, r.text
                assert r.json()["error"]["message"] == "the API key is unknown, revoked or expired"
        assert _lookups(base, admin_key) == lookups + 5

        # The address has spent 24 of its 30: 22 failures, and the first lookups of the two good keys.
        # Past its budget it is refused before any lookup, with a Retry-After.
        statuses = _until_refused(lambda _: client.get("/v1/jobs", headers=_auth(_random_key())), 40)
        refilled = int((time.monotonic() - started) * 0.2) + 1  # the budget refills at 0.2/s meanwhile
        assert 6 <= statuses.count(401) <= 6 + refilled and statuses[-1] == 429, statuses
        refused = client.get("/v1/jobs", headers=_auth(_random_key()))
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_auth_failures"
        assert (
            int(refused.headers["Retry-After"]) >= 1
            and refused.headers["X-Content-Type-Options"] == "nosniff"
        )
        # A key this process has never seen waits like the rest of the address; the good client,
        # known to this process, keeps working from it.
        assert client.get("/v1/jobs", headers=_auth(stranger)).status_code == 429
        assert client.post("/v1/jobs", json=UNREAD, headers=_auth(good)).status_code == 201
        # A lookup for each 401; none for the requests refused with 429.
        assert _lookups(base, admin_key) == lookups + 5 + statuses.count(401)
        assert _metric(base, admin_key, "jobyard_auth_refusals_total", reason="address_limited") >= 2
    assert proc.alive()


def test_forged_forwarded_headers_count_only_from_trusted_proxies(
    settings: Settings, farm: Farm, admin_key: str
) -> None:
    # Without trusted proxies, a client cannot spread its failures over invented addresses.
    farm.settings = settings.replace(auth_failures_per_s=1.0, auth_failures_burst=10)
    _, untrusting = farm.api()
    with httpx.Client(base_url=untrusting, timeout=10) as client:
        statuses = _until_refused(
            lambda i: client.get(
                "/v1/jobs", headers=_auth(_random_key(), **{"X-Forwarded-For": f"203.0.113.{i}"})
            ),
            20,
        )
        assert statuses[-1] == 429, statuses
        https = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
        assert "Strict-Transport-Security" not in https.headers  # a client's word is not enough

    # Behind a trusted proxy (this test plays it, from 127.0.0.1), the address it appends counts.
    farm.settings = settings.replace(
        auth_failures_per_s=1.0, auth_failures_burst=10, trusted_proxies=("127.0.0.1",)
    )
    _, proxied = farm.api()
    with httpx.Client(base_url=proxied, timeout=10) as client:

        def via_proxy(client_address: str, forged: str = "", **headers: str) -> httpx.Response:
            forwarded = f"{forged}, {client_address}" if forged else client_address
            return client.get(
                "/v1/jobs", headers=_auth(_random_key(), **{"X-Forwarded-For": forwarded, **headers})
            )

        # The attacker's own address is the one the proxy appended, whatever it wrote before it.
        statuses = _until_refused(lambda i: via_proxy("198.51.100.7", forged=f"10.0.0.{i}"), 20)
        assert statuses[-1] == 429, statuses
        assert via_proxy("198.51.100.8").status_code == 401  # another client is not punished
        # https as the proxy says: HSTS, and the dashboard's cookies are Secure.
        https = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
        assert https.headers["Strict-Transport-Security"] == HSTS.decode()
        login = client.get("/dashboard/login", headers={"X-Forwarded-Proto": "https"})
        assert login.status_code == 200 and "secure" in login.headers["set-cookie"].lower()
        plain = client.get("/dashboard/login")
        assert "secure" not in plain.headers["set-cookie"].lower()
        assert "Strict-Transport-Security" not in plain.headers


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


def test_huge_and_odd_headers_get_a_4xx_and_the_api_stays_up(settings: Settings, farm: Farm) -> None:
    proc, base = farm.api()
    port = int(base.rsplit(":", 1)[1])
    good = make_key(settings, "jobs:write", name="good")
    cases = [
        b"Authorization: Bearer " + b"A" * 60_000,
        b"Authorization: Bearer jy_" + bytes(range(128, 160)),  # bytes that are not UTF-8
        b"X-API-Key: " + b"jy_" + b"\xff" * 32,
        b"Authorization: Basic dXNlcjpwYXNz",
        b"Authorization: Bearer",
        b"Authorization: bearer    " + _random_key().encode(),
        b"X-Forwarded-For: " + b"1.2.3.4, " * 20_000,
        b"X-Forwarded-Proto: " + b"https" * 5_000,
        b"\r\n".join(b"X-Junk-%d: %s" % (i, b"v" * 100) for i in range(300)),
        b"Authorization: Bearer jy_\x00" + b"A" * 31,
    ]
    for extra in cases:
        answer = _raw(
            port, b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\nConnection: close\r\n\r\n"
        )
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None
        assert status is None or 400 <= status < 500, (extra[:40], answer[:200])
        assert proc.alive(), extra[:40]
    assert httpx.post(f"{base}/v1/jobs", json=UNREAD, headers=_auth(good), timeout=10).status_code == 201


def test_key_lookups_cannot_take_the_pool_or_hold_a_good_client(settings: Settings, farm: Farm) -> None:
    """Lookups of unknown keys run one at a time here; while Postgres holds them (the api_keys table
    is locked), strangers get a 503 with Retry-After after a bounded wait, and a good client keeps
    enqueueing."""
    farm.settings = settings.replace(
        key_lookup_concurrency=1, auth_failures_per_s=0, api_key_cache_s=60.0, db_lock_timeout_s=4.0
    )
    proc, base = farm.api()
    good = make_key(settings, "jobs:write", name="good")
    assert httpx.post(f"{base}/v1/jobs", json=UNREAD, headers=_auth(good), timeout=10).status_code == 201

    locked = threading.Event()
    release = threading.Event()

    def hold_lock() -> None:
        with transaction(settings) as conn:
            conn.execute(sa.text("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE"))
            locked.set()
            release.wait(20)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert locked.wait(10)

    async def flood() -> tuple[list[httpx.Response], list[int]]:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            strangers = [
                asyncio.ensure_future(client.get("/v1/jobs", headers=_auth(_random_key()))) for _ in range(20)
            ]
            good_statuses = []
            for _ in range(10):
                r = await client.post("/v1/jobs", json=UNREAD, headers=_auth(good))
                good_statuses.append(r.status_code)
            return list(await asyncio.gather(*strangers)), good_statuses

    try:
        started = time.monotonic()
        answers, good_statuses = asyncio.run(flood())
        took = time.monotonic() - started
    finally:
        release.set()
        holder.join()
    assert good_statuses == [201] * 10
    codes = sorted(r.json()["error"]["code"] for r in answers)
    # One stranger held the slot and met the lock timeout; the rest waited 2 s for the slot.
    assert codes.count("auth_busy") == 19 and codes.count("database_timeout") == 1, codes
    assert all(r.status_code == 503 and r.headers["Retry-After"] == "1" for r in answers)
    assert took < 10, took
    with transaction(settings) as conn:
        waiting = conn.execute(
            sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        ).scalar_one()
    assert waiting == 0
    assert proc.alive()


def test_sessions_carry_statement_and_lock_timeouts_and_a_lock_wait_answers_503(
    settings: Settings, api: TestClient[Any], admin_key: str
) -> None:
    with transaction(settings) as conn:
        assert conn.execute(sa.text("SHOW statement_timeout")).scalar_one() == "30s"
        assert conn.execute(sa.text("SHOW lock_timeout")).scalar_one() == "5s"
    from control_api.app import create_app

    quick = settings.replace(db_lock_timeout_s=1.0)
    job_id = api.post("/v1/jobs", json={**UNREAD, "delay_seconds": 3600}).json()["id"]
    with TestClient(create_app(quick, configure_logs=False)) as client:
        client.headers["Authorization"] = f"Bearer {admin_key}"
        with transaction(settings) as conn:
            conn.execute(sa.select(jobs.c.id).where(jobs.c.id == uuid.UUID(job_id)).with_for_update())
            started = time.monotonic()
            r = client.post(f"/v1/jobs/{job_id}/cancel")
            waited = time.monotonic() - started
        assert r.status_code == 503 and r.json()["error"]["code"] == "database_timeout", r.text
        assert r.headers["Retry-After"] == "1" and 0.9 < waited < 5, waited
        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200  # once the lock is gone


def test_readers_without_ops_see_errors_without_secrets_or_sql_values(
    settings: Settings, farm: Farm, api: TestClient[Any], admin_key: str, wait_job: JobWaiter
) -> None:
    from control_api.app import create_app

    token = f"EAAG-{secrets.token_hex(8)}"
    farm.settings = settings.replace(whatsapp_token=token)  # every process of a farm has the same
    farm.worker(threads=1)
    sk = f"sk-{secrets.token_hex(12)}"
    job = api.post(
        "/v1/jobs",
        json={"type": "test_leaky", "payload": {"to": "+447700900123", "text": "hi", "api_key": sk}},
    ).json()
    wait_job(job["id"], "dead")
    # A second job whose stored error is a database error with the statement's parameters.
    other = api.post("/v1/jobs", json={**UNREAD, "delay_seconds": 3600}).json()
    orig = Exception("duplicate key value\nDETAIL:  Key (business_key)=(acct-99-secret) already exists.")
    stored = error_record(sa.exc.IntegrityError("INSERT ...", {"business_key": "acct-99-secret"}, orig))
    with transaction(settings) as conn:
        conn.execute(sa.update(jobs).where(jobs.c.id == uuid.UUID(other["id"])).values(error=stored))

    reader = make_key(settings, "jobs:read", name="reader")
    with TestClient(create_app(farm.settings, configure_logs=False)) as client:
        as_reader = _auth(reader)
        for path in (
            f"/v1/jobs/{job['id']}",
            f"/v1/jobs/{job['id']}/attempts",
            f"/v1/jobs/{other['id']}",
            "/v1/jobs",
        ):
            shown = client.get(path, headers=as_reader)
            assert shown.status_code == 200
            body = shown.json()
            errors = json.dumps([item.get("error") for item in body.get("items", [body])])
            for leak in (token, sk, "acct-99-secret"):  # the payload is the caller's own; errors are not
                assert leak not in errors, (path, leak)
        read = client.get(f"/v1/jobs/{job['id']}", headers=as_reader).json()
        assert read["error"]["code"] == "unexpected_error" and "[redacted]" in read["error"]["message"]
        # Operators (ops) see what was stored.
        assert token in client.get(f"/v1/jobs/{job['id']}/attempts", headers=_auth(admin_key)).text
        assert "acct-99-secret" in client.get(f"/v1/jobs/{other['id']}", headers=_auth(admin_key)).text


@pytest.fixture
def docs_client(settings: Settings) -> Iterator[TestClient[Any]]:
    from control_api.app import create_app

    with TestClient(create_app(settings.replace(api_docs_ui=True), configure_logs=False)) as client:
        yield client


def test_the_docs_viewers_are_off_unless_enabled(api: TestClient[Any], docs_client: TestClient[Any]) -> None:
    assert api.get("/schema/openapi.json").status_code == 200
    assert api.get("/schema/openapi.yaml").status_code == 200
    for viewer in ("/schema/redoc", "/schema/swagger", "/schema/elements", "/schema/rapidoc"):
        off = api.get(viewer)
        assert off.status_code == 404 and off.headers["Content-Security-Policy"] == STRICT_CSP, viewer
    on = docs_client.get("/schema/redoc")
    assert on.status_code == 200 and on.headers["Content-Security-Policy"] == DOCS_CSP
