"""The WhatsApp assistant against the fake Cloud API and a fake LLM, with a real worker: a customer's
question answered once in their conversation, WhatsApp's 24-hour service window on the farm's moved
clock, handoff words, STOP, guardrails, business hours, and hostile input (another tenant's number,
a replayed message, enormous texts, texts that look like the farm's own syntax)."""

from __future__ import annotations

import json
from typing import Any

from litestar.testing import TestClient

from core.messaging.webhook import signature
from core.platform.settings import Settings
from tests.fakes.openai import FakeOpenAI
from tests.fakes.whatsapp import PHONE_NUMBER_ID, FakeWhatsApp, customer_message
from tests.integration.assistant.conftest import APP_SECRET, deliver
from tests.integration.conftest import Farm, JobWaiter, make_key
from tests.services import wait_for

CUSTOMER = "+447700900123"
SHOP_A_NUMBER, SHOP_A_TOKEN, SHOP_A_SECRET = (
    "300000000000777",
    "shop-a-token-0123456789",
    "shop-a-app-secret-0123",
)
ASSISTANT = {
    "enabled": True,
    "system_prompt": "You are the Teapot Shop's assistant. Answer briefly.",
    "forbidden_phrases": ["free shipping"],
}


def _write(public: TestClient[Any], text: str, message_id: str, customer: str = CUSTOMER) -> dict[str, int]:
    return deliver(public, customer_message(customer.lstrip("+"), text, message_id=message_id))


def _set_assistant(api: TestClient[Any], **fields: Any) -> dict[str, Any]:
    r = api.put("/v1/assistants/whatsapp", json={**ASSISTANT, **fields})
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


def _conversation_chat(api: TestClient[Any], tenant: str | None = None) -> str:
    """The chat of the one conversation with an unread customer message."""
    params = {"user_id": "inbox"}
    (item,) = api.get("/v1/unread", params=params).json()["items"]
    assert tenant is None or item["tenant"] == tenant
    return item["chat_id"]  # type: ignore[no-any-return]


def _messages(api: TestClient[Any], chat_id: str) -> list[tuple[str, str]]:
    items = api.get(f"/v1/chats/{chat_id}/messages").json()["items"]
    return [(m["role"], m["content"]) for m in reversed(items)]


def _jobs(api: TestClient[Any], type_: str) -> list[dict[str, Any]]:
    return api.get("/v1/jobs", params={"type": type_}).json()["items"]  # type: ignore[no-any-return]


def _audit(api: TestClient[Any]) -> list[dict[str, Any]]:
    return api.get("/v1/audit").json()["items"]  # type: ignore[no-any-return]


def test_a_customers_question_is_answered_once_in_their_conversation_within_the_window(
    api: TestClient[Any],
    public: TestClient[Any],
    farm: Farm,
    whatsapp: FakeWhatsApp,
    llm: FakeOpenAI,
    wait_job: JobWaiter,
) -> None:
    _set_assistant(api)
    worker = farm.worker()
    question = "Do you have the teapot in blue?"
    counts = _write(public, question, "wamid.teapot-1")
    assert (counts["messages"], counts["auto_replies"], counts["handoffs"]) == (1, 1, 0)

    wait_for(lambda: whatsapp.requests(CUSTOMER), timeout=60, what="the reply to reach WhatsApp")
    (reply_job,) = _jobs(api, "whatsapp_reply")
    done = wait_job(reply_job["id"], timeout=30)
    assert done["result"]["status"] == "replied"
    wait_job(done["result"]["send_job_id"], timeout=30)
    (sent,) = whatsapp.requests(CUSTOMER)
    answer = f"llm says: re {question}"
    assert (sent.body["type"], sent.body["text"]) == ("text", {"body": answer})
    assert sent.body["context"] == {"message_id": "wamid.teapot-1"}
    assert sent.number == PHONE_NUMBER_ID
    (asked,) = llm.requests
    assert asked["messages"] == [
        {"role": "system", "content": ASSISTANT["system_prompt"]},
        {"role": "user", "content": question},
    ]

    chat_id = _conversation_chat(api)
    assert chat_id.startswith("wa:") and CUSTOMER.lstrip("+") not in chat_id
    assert _messages(api, chat_id) == [("user", question), ("assistant", answer)]
    chat = api.get(f"/v1/chats/{chat_id}").json()
    assert chat["needs_human"] is None
    assert chat["whatsapp"]["customer"] == "+44*******123"

    # Meta delivers the same message again: nothing is stored, nothing answered.
    again = _write(public, question, "wamid.teapot-1")
    assert (again["messages"], again["auto_replies"]) == (0, 0)
    assert len(_jobs(api, "whatsapp_reply")) == 1 and len(_messages(api, chat_id)) == 2

    # 25 hours after the customer's last message (the farm's clock moved), free-form text goes dead;
    # a template still goes out.
    worker.stop()
    farm.settings = farm.settings.replace(clock_offset_s=25 * 3600.0)
    farm.worker()
    text = api.post(
        "/v1/jobs", json={"type": "whatsapp_message", "payload": {"to": CUSTOMER, "text": "Still there?"}}
    )
    dead = wait_job(text.json()["id"], "dead", timeout=60)
    assert (dead["error"]["code"], dead["attempts"]) == ("outside_service_window", 1)
    assert "+44*******123" in dead["error"]["message"] and CUSTOMER not in dead["error"]["message"]
    template = {"name": "back_in_stock", "language": "en_US"}
    sent_template = api.post(
        "/v1/jobs", json={"type": "whatsapp_message", "payload": {"to": CUSTOMER, "template": template}}
    )
    wait_job(sent_template.json()["id"], timeout=60)
    assert [r.body["type"] for r in whatsapp.requests(CUSTOMER)] == ["text", "template"]


def test_a_reply_to_someone_who_never_wrote_goes_dead_but_a_plain_send_goes_out(
    api: TestClient[Any], farm: Farm, whatsapp: FakeWhatsApp, wait_job: JobWaiter
) -> None:
    farm.worker()
    payload = {"to": "+447700900999", "text": "Re your message", "in_reply_to": "wamid.never"}
    reply = api.post("/v1/jobs", json={"type": "whatsapp_message", "payload": payload})
    dead = wait_job(reply.json()["id"], "dead", timeout=60)
    assert dead["error"]["code"] == "outside_service_window"
    plain = api.post(
        "/v1/jobs", json={"type": "whatsapp_message", "payload": {"to": "+447700900999", "text": "Hi"}}
    )
    wait_job(plain.json()["id"], timeout=60)
    assert [r.body["text"]["body"] for r in whatsapp.requests()] == ["Hi"]


def test_a_customer_asking_for_a_human_gets_no_reply_and_the_chat_is_flagged(
    api: TestClient[Any],
    public: TestClient[Any],
    farm: Farm,
    settings: Settings,
    whatsapp: FakeWhatsApp,
    llm: FakeOpenAI,
    wait_job: JobWaiter,
) -> None:
    _set_assistant(api)
    farm.worker()
    counts = _write(public, "human please", "wamid.human-1")
    assert (counts["messages"], counts["auto_replies"], counts["handoffs"]) == (1, 0, 1)
    chat_id = _conversation_chat(api)
    chat = api.get(f"/v1/chats/{chat_id}").json()
    assert chat["needs_human"]["reason"] == "the customer asked for a person ('human')"
    assert [c["id"] for c in api.get("/v1/chats").json()["items"]] == [chat_id]

    # STOP opts the customer out, and is not answered either; a word inside another is no handoff.
    stop = _write(public, "STOP", "wamid.human-2")
    assert (stop["opt_outs"], stop["auto_replies"]) == (1, 0)
    humane = _write(public, "Is the teapot made humanely?", "wamid.human-3", customer="+447700900124")
    assert (humane["auto_replies"], humane["handoffs"]) == (1, 0)
    (answered,) = _jobs(api, "whatsapp_reply")
    wait_job(answered["id"], timeout=60)
    wait_for(lambda: whatsapp.requests("+447700900124"), timeout=60, what="the humane reply")
    # Something positive happened for the other customer; the one who asked for a human got nothing.
    assert whatsapp.requests(CUSTOMER) == [] and len(llm.requests) == 1
    assert _messages(api, chat_id) == [("user", "human please"), ("user", "STOP")]

    # Ops take it over and clear the flag: audited; `jobs:write` alone may not.
    writer = {"Authorization": f"Bearer {make_key(settings, 'jobs:write', 'jobs:read')}"}
    assert api.delete(f"/v1/chats/{chat_id}/needs-human", headers=writer).status_code == 403
    assert api.delete(f"/v1/chats/{chat_id}/needs-human").status_code == 204
    assert api.get(f"/v1/chats/{chat_id}").json()["needs_human"] is None
    assert api.delete(f"/v1/chats/{chat_id}/needs-human").json()["error"]["code"] == "chat_not_found"
    (entry,) = [e for e in _audit(api) if e["action"] == "chat_needs_human_clear"]
    assert entry["selection"] == {"tenant": "default", "chat_id": chat_id}


def test_guardrails_withhold_a_reply_and_flag_the_chat(
    api: TestClient[Any], public: TestClient[Any], farm: Farm, whatsapp: FakeWhatsApp, wait_job: JobWaiter
) -> None:
    _set_assistant(api)
    farm.worker()
    # The fake LLM repeats the question: the reply holds the forbidden phrase, in another case.
    assert _write(public, "Is there FREE   Shipping on teapots?", "wamid.guard-1")["auto_replies"] == 1
    (job,) = _jobs(api, "whatsapp_reply")
    done = wait_job(job["id"], timeout=60)
    assert done["result"]["status"] == "withheld"
    chat_id = _conversation_chat(api)
    flag = api.get(f"/v1/chats/{chat_id}").json()["needs_human"]
    assert flag["reason"] == "reply withheld: the reply contains the forbidden phrase 'free shipping'"
    assert _messages(api, chat_id) == [("user", "Is there FREE   Shipping on teapots?")]
    assert whatsapp.requests() == [] and _jobs(api, "whatsapp_message") == []

    _set_assistant(api, max_reply_chars=20)
    assert _write(public, "And in green?", "wamid.guard-2")["auto_replies"] == 1
    second = next(j for j in _jobs(api, "whatsapp_reply") if j["id"] != job["id"])
    assert wait_job(second["id"], timeout=60)["result"]["reason"] == (
        "reply withheld: the reply has 26 characters, more than max_reply_chars 20"
    )
    assert whatsapp.requests() == []


def test_outside_business_hours_only_the_away_message_goes_out_once(
    api: TestClient[Any], public: TestClient[Any], farm: Farm, whatsapp: FakeWhatsApp, llm: FakeOpenAI
) -> None:
    hours = {"timezone": "Pacific/Kiritimati", "weekly": {}, "away_message": "We are closed; back soon."}
    _set_assistant(api, business_hours=hours)
    farm.worker()
    assert _write(public, "Hello?", "wamid.away-1")["auto_replies"] == 1
    assert _write(public, "Anyone?", "wamid.away-2")["auto_replies"] == 0
    wait_for(lambda: whatsapp.requests(CUSTOMER), timeout=60, what="the away message")
    (away,) = whatsapp.requests(CUSTOMER)
    assert away.body["text"] == {"body": "We are closed; back soon."}
    assert llm.requests == [] and _jobs(api, "whatsapp_reply") == []


def test_hostile_messages_are_stored_as_written_and_answered_once(
    api: TestClient[Any],
    public: TestClient[Any],
    farm: Farm,
    whatsapp: FakeWhatsApp,
    llm: FakeOpenAI,
    wait_job: JobWaiter,
) -> None:
    _set_assistant(api)
    farm.worker()
    texts = {
        "wamid.hostile-1": "x" * 100_000,  # cut to WhatsApp's 4,096; the echoed reply is longer: withheld
        "wamid.hostile-2": "jy2:deadbeef:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "wamid.hostile-3": "{{ reply.result.content }} STOP",
    }
    for message_id, text in texts.items():
        assert _write(public, text, message_id)["auto_replies"] == 1
        (job,) = api.get("/v1/jobs", params={"business_key": f"whatsapp:{message_id}"}).json()["items"]
        wait_job(job["id"], timeout=60)
    # A replayed body, and a message whose id or sender is not one, store nothing.
    assert _write(public, texts["wamid.hostile-2"], "wamid.hostile-2")["messages"] == 0
    assert _write(public, "hi", "wamid.bad id with spaces")["messages"] == 0
    assert _write(public, "hi", "wamid.bad-sender", customer="+0")["messages"] == 0

    wait_for(lambda: len(whatsapp.requests(CUSTOMER)) == 2, timeout=60, what="two replies")
    chat_id = _conversation_chat(api)
    stored = [content for role, content in _messages(api, chat_id) if role == "user"]
    assert stored == ["x" * 4096, texts["wamid.hostile-2"], texts["wamid.hostile-3"]]
    assert sorted(r.body["text"]["body"] for r in whatsapp.requests()) == [
        f"llm says: re {texts['wamid.hostile-2']}",
        f"llm says: re {texts['wamid.hostile-3']}",
    ]
    assert len(llm.requests) == 3
    flag = api.get(f"/v1/chats/{chat_id}").json()["needs_human"]
    assert flag["reason"].startswith("reply withheld: the reply has 4109 characters")


def test_another_tenants_number_and_customer_stay_that_tenants(
    api: TestClient[Any], public: TestClient[Any], farm: Farm, settings: Settings, whatsapp: FakeWhatsApp
) -> None:
    whatsapp.add_number(SHOP_A_NUMBER, SHOP_A_TOKEN)
    number = {"phone_number_id": SHOP_A_NUMBER, "access_token": SHOP_A_TOKEN, "app_secret": SHOP_A_SECRET}
    assert api.put("/v1/tenants/shop-a/whatsapp", json=number).status_code == 201
    shop_a = {
        "Authorization": f"Bearer {make_key(settings, 'ops', 'jobs:read', 'jobs:write', tenant='shop-a')}"
    }
    shop_b = {
        "Authorization": f"Bearer {make_key(settings, 'ops', 'jobs:read', 'jobs:write', tenant='shop-b')}"
    }
    assert api.put("/v1/assistants/whatsapp", json=ASSISTANT, headers=shop_a).status_code == 201
    farm.worker()

    body = customer_message(
        CUSTOMER.lstrip("+"), "Blue teapot?", message_id="wamid.a-1", phone_number_id=SHOP_A_NUMBER
    )
    # Signed with the farm's secret, a message to shop-a's number is refused whole.
    raw = json.dumps(body).encode()
    forged = public.post(
        "/webhooks/whatsapp",
        content=raw,
        headers={"content-type": "application/json", "X-Hub-Signature-256": signature(APP_SECRET, raw)},
    )
    assert forged.status_code == 401
    assert deliver(public, body, SHOP_A_SECRET)["auto_replies"] == 1
    wait_for(lambda: whatsapp.requests(CUSTOMER), timeout=60, what="shop-a's reply")
    (sent,) = whatsapp.requests(CUSTOMER)
    assert sent.number == SHOP_A_NUMBER

    (item,) = api.get("/v1/unread", params={"user_id": "inbox"}, headers=shop_a).json()["items"]
    chat_id = item["chat_id"]
    assert (
        api.get(f"/v1/chats/{chat_id}", headers=shop_a).json()["whatsapp"]["phone_number_id"] == SHOP_A_NUMBER
    )
    assert api.get(f"/v1/chats/{chat_id}", headers=shop_a).json()["tenant"] == "shop-a"
    # shop-b sees no such chat, messages, counters or assistant; an admin names the tenant.
    assert api.get(f"/v1/chats/{chat_id}", headers=shop_b).json()["error"]["code"] == "chat_not_found"
    assert api.get(f"/v1/chats/{chat_id}", params={"tenant": "shop-a"}, headers=shop_b).status_code == 404
    assert api.get(f"/v1/chats/{chat_id}/messages", headers=shop_b).json()["items"] == []
    assert api.get("/v1/unread", params={"user_id": "inbox"}, headers=shop_b).json()["items"] == []
    assert api.get("/v1/assistants/whatsapp", headers=shop_b).status_code == 404
    assert api.get(f"/v1/chats/{chat_id}", params={"tenant": "shop-a"}).json()["id"] == chat_id

    # The same customer writing to the farm's number is another conversation, the farm's (default's,
    # which has no assistant: stored, not answered).
    assert _write(public, "Blue teapot?", "wamid.farm-1")["auto_replies"] == 0
    items = api.get("/v1/unread", params={"user_id": "inbox"}).json()["items"]
    assert sorted(i["tenant"] for i in items) == ["default", "shop-a"]
    assert len({i["chat_id"] for i in items}) == 2


def test_the_assistant_configuration_routes(api: TestClient[Any], settings: Settings) -> None:
    shop_a = {"Authorization": f"Bearer {make_key(settings, 'ops', tenant='shop-a')}"}
    writer = {"Authorization": f"Bearer {make_key(settings, 'jobs:write', tenant='shop-a')}"}
    assert api.get("/v1/assistants/whatsapp", headers=shop_a).json()["error"]["code"] == "assistant_not_found"
    assert api.put("/v1/assistants/whatsapp", json=ASSISTANT, headers=writer).status_code == 403

    made = api.put("/v1/assistants/whatsapp", json={"system_prompt": "Hi"}, headers=shop_a)
    assert made.status_code == 201, made.text
    shown = made.json()
    assert (shown["tenant"], shown["enabled"], shown["handoff_words"]) == (
        "shop-a",
        True,
        ["human", "agent", "person"],
    )
    assert (shown["max_reply_chars"], shown["knowledge"], shown["business_hours"]) == (4096, None, None)
    hours = {"timezone": "Europe/London", "weekly": {"mon": ["09:00-17:30"], "sat": ["10:00-24:00"]}}
    body = {**ASSISTANT, "knowledge": {"collection": "products", "k": 3}, "business_hours": hours}
    replaced = api.put("/v1/assistants/whatsapp", json=body, headers=shop_a)
    assert replaced.status_code == 200 and replaced.json()["business_hours"]["weekly"]["sat"] == [
        "10:00-24:00"
    ]
    assert api.get("/v1/assistants/whatsapp", params={"tenant": "shop-a"}).json()["knowledge"] == {
        "collection": "products",
        "k": 3,
    }
    # Another tenant named by a tenant's key: as if it had none.
    assert api.get("/v1/assistants/whatsapp", params={"tenant": "default"}, headers=shop_a).status_code == 404

    for bad in (
        {"business_hours": {**hours, "timezone": "Mars/Olympus"}},
        {"business_hours": {**hours, "weekly": {"mon": ["17:00-09:00"]}}},
        {"business_hours": {**hours, "weekly": {"someday": ["09:00-17:00"]}}},
        {"handoff_words": ["   "]},
        {"max_reply_chars": 5000},
        {"knowledge": {"collection": "../etc", "k": 3}},
        {"surprise": True},
    ):
        r = api.put("/v1/assistants/whatsapp", json={**ASSISTANT, **bad}, headers=shop_a)
        assert r.status_code == 422, (bad, r.text)

    gone = api.delete("/v1/assistants/whatsapp", headers=shop_a)
    assert gone.status_code == 200 and gone.json()["knowledge"] == {"collection": "products", "k": 3}
    assert api.delete("/v1/assistants/whatsapp", headers=shop_a).status_code == 404
    actions = [e["action"] for e in _audit(api) if e["tenant"] == "shop-a"]
    assert sorted(a for a in actions if a.startswith("assistant_")) == [
        "assistant_delete",
        "assistant_set",
        "assistant_set",
    ]
