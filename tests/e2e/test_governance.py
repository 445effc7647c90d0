"""Tenants, keys, limits, budgets and the response cache, as the official ``openai`` SDK sees
them: the right exception classes, codes and headers."""

from __future__ import annotations

import time

import openai
import pytest

from conftest import REQUEST_TIMEOUT_S, Landfall, admin, create_key

USER = [{"role": "user", "content": "hello there gateway"}]


def sdk(landfall: Landfall, key: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=landfall.base_url, api_key=key, max_retries=0, timeout=REQUEST_TIMEOUT_S
    )


def test_rate_limits_raise_rate_limit_error_with_openai_headers(landfall: Landfall) -> None:
    key = create_key(landfall, {}, {"limits": {"requests_per_second": 2}})
    with sdk(landfall, key) as client:
        for remaining in ("1", "0"):
            raw = client.chat.completions.with_raw_response.create(model="chat", messages=USER)
            assert raw.headers["x-ratelimit-limit-requests"] == "2"
            assert raw.headers["x-ratelimit-remaining-requests"] == remaining
            assert raw.parse().choices[0].message.content
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="chat", messages=USER)
    assert caught.value.status_code == 429
    assert caught.value.code == "rate_limit_exceeded"
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert caught.value.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_an_exhausted_budget_is_insufficient_quota(landfall: Landfall) -> None:
    key = create_key(landfall, {"budgets": [{"period": "day", "tokens": 60}]}, {})
    served = 0
    with sdk(landfall, key) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            for _ in range(50):
                client.chat.completions.create(model="chat", messages=USER, max_tokens=16)
                served += 1
    assert caught.value.code == "insufficient_quota"
    assert caught.value.type == "insufficient_quota"
    assert 2 <= served <= 10


def test_scopes_revocation_and_listing(landfall: Landfall) -> None:
    tenant = admin(landfall, "POST", "/tenants", {"name": "Scoped"}).json()
    created = admin(
        landfall, "POST", "/keys", {"tenant_id": tenant["id"], "scopes": {"models": ["chat"]}}
    ).json()
    with sdk(landfall, created["secret"]) as client:
        assert [model.id for model in client.models.list()] == ["chat"]
        with pytest.raises(openai.PermissionDeniedError) as caught:
            client.chat.completions.create(model="embed", messages=USER)
        assert caught.value.code == "model_not_allowed"
        client.chat.completions.create(model="chat", messages=USER)
        revoked = admin(landfall, "DELETE", f"/keys/{created['id']}")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        with pytest.raises(openai.AuthenticationError) as caught:
            client.chat.completions.create(model="chat", messages=USER)
        assert "revoked" in caught.value.message
    listed = admin(landfall, "GET", f"/keys?tenant_id={tenant['id']}").json()
    assert [key["id"] for key in listed["data"]] == [created["id"]]
    assert "secret" not in listed["data"][0]


def test_repeated_deterministic_requests_are_served_from_cache(landfall: Landfall) -> None:
    key = create_key(landfall, {}, {})
    question = [{"role": "user", "content": f"cache me {time.time_ns()}"}]
    with sdk(landfall, key) as client:
        first = client.chat.completions.with_raw_response.create(
            model="chat", messages=question, temperature=0
        )
        assert first.headers["x-landfall-cache"] == "miss"
        time.sleep(0.2)
        second = client.chat.completions.with_raw_response.create(
            model="chat", messages=question, temperature=0
        )
        assert second.headers["x-landfall-cache"] == "hit"
        assert second.parse().choices[0].message.content == first.parse().choices[0].message.content

        streamed = [
            client.chat.completions.create(
                model="chat", messages=question, temperature=0, stream=True
            )
            for _ in range(1)
        ]
        live = "".join(c.choices[0].delta.content or "" for c in streamed[0] if c.choices)
        time.sleep(0.2)
        replay_stream = client.chat.completions.create(
            model="chat", messages=question, temperature=0, stream=True
        )
        replay = "".join(c.choices[0].delta.content or "" for c in replay_stream if c.choices)
        assert replay == live == first.parse().choices[0].message.content


def test_admin_errors_name_the_field(landfall: Landfall) -> None:
    response = admin(landfall, "POST", "/tenants", {"limits": {"tokens_per_minute": 0}})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limits.tokens_per_minute"
    response = admin(landfall, "POST", "/keys", {"tenant_id": "no-such-tenant"})
    assert response.status_code == 404
