"""Issue 20's workflow end to end: a product page scraped by real Chromium and its text embedded with
the real all-MiniLM-L6-v2 weights, the second step fed by the first's result; with the site down the
page goes dead and the embedding waits blocked, and a redrive once the site is back finishes it."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from core.embeddings.embed import EMBEDDINGS_QUEUE
from core.scrape.pages import SCRAPE_QUEUE
from tests.fakes.site import FakeSite
from tests.integration.conftest import Farm, JobWaiter
from tests.integration.embeddings.test_embed import MODEL_DIR
from tests.integration.engine.test_workflows import states, step_job, wait_workflow
from tests.integration.scrape.test_scrape import SITE_HOST


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def workflow(site: FakeSite, **page: Any) -> dict[str, Any]:
    return {
        "business_key": "sku-42",
        "steps": {
            "page": {"type": "scrape", "payload": {"url": f"http://{SITE_HOST}:{site.port}/p/42"}, **page},
            "index": {
                "type": "embed",
                "after": ["page"],
                "payload": {
                    "collection": "products",
                    "documents": [{"id": "sku-42", "text": "{{ page.result.text }}"}],
                },
            },
        },
    }


def test_scrape_then_embed_and_a_redrive_after_the_site_was_down(
    api: TestClient[Any],
    farm: Farm,
    wait_job: JobWaiter,
    site: FakeSite,
) -> None:
    farm.settings = farm.settings.replace(
        scrape_allow_hosts=(f"{SITE_HOST}=127.0.0.1",),
        embedding_model=MODEL_DIR,
        worker_queues=(SCRAPE_QUEUE, EMBEDDINGS_QUEUE),
    )
    farm.worker(processes=1, threads=2)
    farm.scheduler()

    created = api.post("/v1/workflows", json=workflow(site))
    assert created.status_code == 201, created.text
    wf = created.json()
    assert (wf["business_key"], [s["name"] for s in wf["steps"]]) == ("sku-42", ["page", "index"])
    done = wait_workflow(api, wf["id"], "succeeded", timeout=120)
    assert states(done) == {"page": "succeeded", "index": "succeeded"}
    text = wait_job(step_job(done, "page"))["result"]["text"]
    assert "cobalt blue" in text
    assert wait_job(step_job(done, "index"))["result"]["embedded"] == 1
    (hit,) = api.get("/v1/collections/products/search", params={"q": "blue teapot", "k": 1}).json()["items"]
    assert (hit["id"], hit["text"]) == ("sku-42", text)

    # The site is down: the page goes dead (no retries asked for), the embedding waits blocked.
    site.down = True
    wf = api.post("/v1/workflows", json=workflow(site, max_retries=0)).json()
    page = wait_job(step_job(wf, "page"), "dead", timeout=60)
    assert page["error"]["code"] == "page_server_error"
    blocked = wait_workflow(api, wf["id"], "dead")
    assert states(blocked) == {"page": "dead", "index": "blocked"}
    assert next(s for s in blocked["steps"] if s["name"] == "index")["job_id"] is None

    # Back up: a redrive of the page finishes the workflow.
    site.down = False
    redriven = api.post("/v1/dead-letters/redrive", json={"ids": [page["id"]], "reason": "the shop is back"})
    assert redriven.json()["redriven"] == 1, redriven.text
    finished = wait_workflow(api, wf["id"], "succeeded", timeout=120)
    assert states(finished) == {"page": "succeeded", "index": "succeeded"}
    # The text is unchanged: the second embedding skipped it.
    assert wait_job(step_job(finished, "index"))["result"]["skipped_unchanged"] == 1
