"""A running job's progress on the events stream: only a stream that names ``job.progress`` in its
``types`` gets it (a stream without ``types`` does not). Webhooks cannot ask for it
(tests/unit/events/test_progress_events.py)."""

from __future__ import annotations

import json

from core.platform.settings import Settings
from tests.integration.conftest import Farm
from tests.integration.live.test_events_stream import Tenant, start_api


def test_progress_reaches_the_streams_that_asked_for_it(farm: Farm, settings: Settings) -> None:
    farm.worker(threads=2)
    shop = Tenant(start_api(farm), settings, "shop-a")
    try:
        with shop.stream(types="job.progress,job.succeeded") as asked, shop.stream() as everything:
            r = shop.client.post(
                "/v1/jobs", json={"type": "test_steps", "payload": {"steps": 15, "step_s": 0.1}}
            )
            assert r.status_code == 201, r.text
            job_id = r.json()["id"]
            seen = []
            for event in asked:
                seen.append((event.event, json.loads(event.data)["data"]))
                if event.event == "job.succeeded":
                    break
            progress = [data["progress"] for kind, data in seen if kind == "job.progress"]
            assert {data["id"] for _, data in seen} == {job_id}
            assert len(progress) >= 2  # at most one a second while it runs, and the last one kept
            fractions = [p["fraction"] for p in progress]
            assert fractions == sorted(fractions) and fractions[-1] == 1.0
            assert progress[-1]["message"] == "done" and seen[-1][1]["progress"]["fraction"] == 1.0

            # The stream without types got the job's end, and no progress before it.
            kinds = []
            for event in everything:
                kinds.append(event.event)
                if event.event == "job.succeeded":
                    break
            assert "job.progress" not in kinds

    finally:
        shop.client.close()
