"""Guardrails as the official ``openai`` SDK sees them: blocked input as ``BadRequestError``
with code ``content_blocked``, masked text and the ``landfall_guardrails`` field, a streamed
answer ended by an ``error`` event, and an answer held for review, approved, then fetched.

The rules are added through the admin API and attached to one tenant, so other tests are not
affected. The mock upstream echoes the last user message (``echo: …``)."""

from __future__ import annotations

import openai
import pytest

from conftest import REQUEST_TIMEOUT_S, Landfall, admin, create_key, httpx

TENANT = "guarded"


@pytest.fixture(scope="module")
def guarded(landfall: Landfall) -> openai.OpenAI:
    rules = {
        "no-guarantees": {"action": "block", "message": "no guaranteed returns",
                          "match": {"words": ["保本", "guaranteed return"]}},
        "mask-phones": {"action": "mask", "match": {"pii": ["cn_mobile"]}},
        "no-secrets-out": {"stages": ["output"], "action": "block", "match": {"words": ["topsecret"]}},
        "review-diagnosis": {"stages": ["output"], "action": "review", "match": {"words": ["diagnosis"]}},
    }
    for rule_id, rule in rules.items():
        response = admin(landfall, "PUT", f"/guardrails/rules/{rule_id}", rule)
        assert response.status_code == 200, response.text
    response = admin(landfall, "PUT", "/guardrails/policies/guarded",
                     {"rules": list(rules), "tenants": [TENANT]})
    assert response.status_code == 200, response.text
    key = create_key(landfall, {"id": TENANT}, {})
    client = openai.OpenAI(base_url=landfall.base_url, api_key=key, max_retries=0,
                           timeout=REQUEST_TIMEOUT_S)
    yield client
    client.close()


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_blocked_input_is_a_bad_request(guarded: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        guarded.chat.completions.create(model="chat", messages=ask("这个产品保 本吗"))
    assert caught.value.code == "content_blocked"
    assert "no guaranteed returns" in caught.value.message


def test_masked_text_and_the_hits_field(guarded: openai.OpenAI) -> None:
    raw = guarded.chat.completions.with_raw_response.create(
        model="chat", messages=ask("call me at 13812345678 please"))
    assert raw.headers["x-landfall-guardrails"] == "mask-phones=mask"
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: call me at *********** please"
    hits = completion.model_extra["landfall_guardrails"]
    assert hits[0]["rule"] == "mask-phones" and hits[0]["details"] == ["cn_mobile"]


def test_a_blocked_stream_ends_with_an_error(guarded: openai.OpenAI) -> None:
    stream = guarded.chat.completions.create(
        model="chat", stream=True, messages=ask("the code word is topsecret ok"))
    received = ""
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received += chunk.choices[0].delta.content
    assert "topsecret" not in received
    assert "blocked" in str(caught.value)


def test_an_answer_held_for_review_is_released_by_id(guarded: openai.OpenAI, landfall: Landfall) -> None:
    raw = guarded.chat.completions.with_raw_response.create(
        model="chat", messages=ask("what is the diagnosis"))
    review_id = raw.headers["x-landfall-review"]
    completion = raw.parse()
    assert completion.model_extra["landfall_review"] == {"id": review_id, "status": "pending"}
    assert "diagnosis" not in completion.choices[0].message.content

    fetch = lambda: httpx.get(  # noqa: E731 - a one-line helper
        f"{landfall.base_url}/reviews/{review_id}",
        headers={"Authorization": f"Bearer {guarded.api_key}"},
        timeout=REQUEST_TIMEOUT_S, trust_env=False)
    assert fetch().json()["status"] == "pending"
    response = admin(landfall, "POST", f"/reviews/{review_id}/approve", {"note": "fine"})
    assert response.status_code == 200, response.text
    released = fetch().json()
    assert released["status"] == "approved"
    assert released["response"]["choices"][0]["message"]["content"] == "echo: what is the diagnosis"
