"""Issue 20, Done-when 2, end to end: the shop's product pages scraped by real Chromium and embedded
with the real all-MiniLM-L6-v2 weights by workflows; a customer's signed WhatsApp message "Do you have
the teapot in blue?" answered once, from the teapot page, in the customer's conversation; and a
free-form text 25 hours after the customer's last message (the farm's clock moved) dead with
`outside_service_window`."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from core.embeddings.embed import EMBEDDINGS_QUEUE
from core.launch.roles import queues_except
from core.platform.settings import Settings
from tests.fakes.openai import FakeOpenAI
from tests.fakes.site import FakeSite
from tests.fakes.whatsapp import PHONE_NUMBER_ID, FakeWhatsApp, customer_message
from tests.integration.assistant.conftest import deliver
from tests.integration.conftest import Farm, JobWaiter
from tests.integration.embeddings.test_embed import MODEL_DIR
from tests.integration.engine.test_workflows import step_job, wait_workflow
from tests.integration.scrape.test_scrape import SITE_HOST

# Nothing may come from the Hugging Face Hub: the farm processes inherit HF_HUB_OFFLINE=1.
pytestmark = pytest.mark.usefixtures("hf_offline")

CUSTOMER = "+447700900456"
QUESTION = "Do you have the teapot in blue?"
#: The shop's product pages on the local site, by SKU.
PAGES = {"sku-42": "/p/42", "sku-7": "/plain"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(scrape_allow_hosts=(f"{SITE_HOST}=127.0.0.1",), embedding_model=MODEL_DIR)


def _index(site: FakeSite, sku: str) -> dict[str, Any]:
    """Issue 20's workflow: a product page scraped, then its text embedded."""
    return {
        "business_key": sku,
        "steps": {
            "page": {"type": "scrape", "payload": {"url": f"http://{SITE_HOST}:{site.port}{PAGES[sku]}"}},
            "index": {
                "type": "embed",
                "after": ["page"],
                "payload": {
                    "collection": "products",
                    "documents": [{"id": sku, "text": "{{ page.result.text }}"}],
                },
            },
        },
    }


def test_a_customer_asks_for_the_blue_teapot_and_is_answered_once_from_its_page(
    api: TestClient[Any],
    public: TestClient[Any],
    farm: Farm,
    settings: Settings,
    site: FakeSite,
    whatsapp: FakeWhatsApp,
    llm: FakeOpenAI,
    wait_job: JobWaiter,
) -> None:
    # As `jobyard up` lays a farm out: the light and scrape queues in one worker, embeddings in another.
    farm.settings = settings.replace(worker_queues=queues_except(settings, (EMBEDDINGS_QUEUE,)))
    light = farm.worker(threads=2)
    farm.settings = settings.replace(worker_queues=(EMBEDDINGS_QUEUE,))
    farm.worker(threads=2)

    for sku in PAGES:
        created = api.post("/v1/workflows", json=_index(site, sku))
        assert created.status_code == 201, created.text
        done = wait_workflow(api, created.json()["id"], "succeeded", timeout=180)
        assert wait_job(step_job(done, "index"))["result"]["embedded"] == 1
    teapot_page = api.get("/v1/collections/products/search", params={"q": "cobalt teapot", "k": 1}).json()
    assert teapot_page["items"][0]["id"] == "sku-42" and "cobalt blue" in teapot_page["items"][0]["text"]

    assistant = {
        "system_prompt": "You are the Teapot Shop's assistant. Answer from the product pages.",
        "knowledge": {"collection": "products", "k": 1},
    }
    assert api.put("/v1/assistants/whatsapp", json=assistant).status_code == 201
    body = customer_message(CUSTOMER.lstrip("+"), QUESTION, message_id="wamid.teapot-question")
    assert deliver(public, body)["auto_replies"] == 1

    (reply_job,) = api.get("/v1/jobs", params={"type": "whatsapp_reply"}).json()["items"]
    replied = wait_job(reply_job["id"], timeout=90)
    assert replied["result"]["status"] == "replied", replied
    wait_job(replied["result"]["send_job_id"], timeout=60)

    # The fake LLM was given the teapot page's text, after the system prompt, with the question.
    (asked,) = llm.requests
    system, knowledge, question = asked["messages"]
    assert system == {"role": "system", "content": assistant["system_prompt"]}
    assert knowledge["role"] == "system" and "A stoneware teapot in cobalt blue" in knowledge["content"]
    assert question == {"role": "user", "content": QUESTION}
    # The fake WhatsApp API received exactly one text reply, to that customer, quoting the question.
    (sent,) = whatsapp.requests()
    answer = f"llm says: re {QUESTION}"
    assert (sent.body["to"], sent.body["type"], sent.body["text"]) == (CUSTOMER, "text", {"body": answer})
    assert sent.body["context"] == {"message_id": "wamid.teapot-question"} and sent.number == PHONE_NUMBER_ID
    # The conversation holds both messages; the reply records the page it was given.
    (item,) = api.get("/v1/unread", params={"user_id": "inbox"}).json()["items"]
    messages = api.get(f"/v1/chats/{item['chat_id']}/messages").json()["items"]
    assert [(m["role"], m["content"]) for m in reversed(messages)] == [
        ("user", QUESTION),
        ("assistant", answer),
    ]
    assert [d["id"] for d in messages[0]["knowledge"]["documents"]] == ["sku-42"]

    # 25 hours after the customer's last message (the farm's clock moved), free-form text goes dead.
    light.stop()
    farm.settings = settings.replace(
        worker_queues=queues_except(settings, (EMBEDDINGS_QUEUE,)), clock_offset_s=25 * 3600.0
    )
    farm.worker(threads=2)
    late = api.post(
        "/v1/jobs", json={"type": "whatsapp_message", "payload": {"to": CUSTOMER, "text": "Still keen?"}}
    )
    dead = wait_job(late.json()["id"], "dead", timeout=60)
    assert (dead["error"]["code"], dead["attempts"]) == ("outside_service_window", 1)
    assert len(whatsapp.requests()) == 1
