"""The official `openai` Python SDK against a running `landfall`.

The upstream is `landfall-mock-upstream` (echoes the last user text, calls the first tool when
tools are given, answers "tool said: <content>" after a tool message, deterministic embeddings),
plus a stdlib server that always answers 429 and a dead provider on a closed port. See
conftest.py for the generated configuration.
"""

from __future__ import annotations

import base64
import json
import math
import struct

import openai
import pytest

from conftest import KEYS, MAX_BODY_BYTES, MODEL_NAMES, Landfall, LimitedUpstream, httpx

TARGET = "x-landfall-target"
ATTEMPTS = "x-landfall-attempts"
MOCK_CHAT_TARGET = "mock/mock-chat"
PROMPT = "hello there gateway"
EXPECTED_TEXT = f"echo: {PROMPT}"
USER = [{"role": "user", "content": PROMPT}]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
WEATHER_QUESTION = "What is the weather in Paris?"
TOOL_RESULT = "sunny, 21 degrees"


def auth_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS['default']}"}


def assert_usage_consistent(usage) -> None:
    assert usage is not None, "usage missing"
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def collect_stream(stream) -> tuple[list, str]:
    chunks = list(stream)
    text = "".join(
        choice.delta.content or "" for chunk in chunks for choice in chunk.choices
    )
    return chunks, text


# --- chat ------------------------------------------------------------------------------------


def test_chat_completion_echoes_with_consistent_usage(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="chat", messages=USER)
    assert completion.object == "chat.completion"
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == EXPECTED_TEXT
    assert choice.finish_reason == "stop"
    assert_usage_consistent(completion.usage)
    # The mock counts words: 3 prompt words + 3 per message; 4 words in the reply.
    assert completion.usage.prompt_tokens == 6
    assert completion.usage.completion_tokens == 4


def test_raw_response_carries_landfall_headers(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="chat", messages=USER)
    assert raw.status_code == 200
    assert raw.headers.get(TARGET) == MOCK_CHAT_TARGET
    assert raw.headers.get(ATTEMPTS) == "1"
    assert raw.parse().choices[0].message.content == EXPECTED_TEXT


def test_stream_with_usage_matches_non_stream(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="chat", messages=USER)
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    assert raw.headers.get("content-type", "").startswith("text/event-stream")
    assert raw.headers.get(TARGET) == MOCK_CHAT_TARGET
    chunks, text = collect_stream(raw.parse())
    assert len(chunks) >= 3, chunks
    assert text == whole.choices[0].message.content == EXPECTED_TEXT
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    finish = [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason]
    assert finish == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert_usage_consistent(last.usage)
    assert last.usage.total_tokens == whole.usage.total_tokens
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_stream_without_include_usage_has_no_usage(client: openai.OpenAI) -> None:
    chunks, text = collect_stream(
        client.chat.completions.create(model="chat", messages=USER, stream=True)
    )
    assert text == EXPECTED_TEXT
    assert chunks, "no chunks"
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks), "a chunk without choices (a usage chunk?)"


# --- tools -----------------------------------------------------------------------------------


def tool_round_trip_messages(call_id: str, name: str, arguments: str) -> list[dict]:
    return [
        {"role": "user", "content": WEATHER_QUESTION},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": TOOL_RESULT},
    ]


def test_tool_call_round_trip(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": WEATHER_QUESTION}],
        tools=[WEATHER_TOOL],
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls, choice.message
    assert len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.id
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments, dict)
    assert arguments == {"query": WEATHER_QUESTION}

    second = client.chat.completions.create(
        model="chat",
        messages=tool_round_trip_messages(call.id, call.function.name, call.function.arguments),
        tools=[WEATHER_TOOL],
    )
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == f"tool said: {TOOL_RESULT}"
    assert not second.choices[0].message.tool_calls


def test_streamed_tool_call_round_trip(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": WEATHER_QUESTION}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    finish_reasons = []
    argument_fragments = 0
    for chunk in stream:
        for choice in chunk.choices:
            if choice.finish_reason:
                finish_reasons.append(choice.finish_reason)
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                if delta.id:
                    call["id"] = delta.id
                if delta.function is not None:
                    if delta.function.name:
                        call["name"] += delta.function.name
                    if delta.function.arguments:
                        call["arguments"] += delta.function.arguments
                        argument_fragments += 1
    assert finish_reasons == ["tool_calls"]
    assert list(calls) == [0]
    call = calls[0]
    assert call["id"]
    assert call["name"] == "get_weather"
    assert argument_fragments > 1, "arguments were expected in several fragments"
    assert json.loads(call["arguments"]) == {"query": WEATHER_QUESTION}

    chunks, text = collect_stream(
        client.chat.completions.create(
            model="chat",
            messages=tool_round_trip_messages(call["id"], call["name"], call["arguments"]),
            tools=[WEATHER_TOOL],
            stream=True,
        )
    )
    assert text == f"tool said: {TOOL_RESULT}"


# --- pass-through parameters -----------------------------------------------------------------


def test_response_format_json_schema(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="chat",
        messages=USER,
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "echo",
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {"echo": {"type": "string"}},
                    "required": ["echo"],
                    "additionalProperties": False,
                },
            },
        },
    )
    # The mock answers JSON only when the response_format reached it.
    assert json.loads(completion.choices[0].message.content) == {"echo": PROMPT}


def test_n_returns_two_choices(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="chat", messages=USER, n=2)
    assert [choice.index for choice in completion.choices] == [0, 1]
    assert all(choice.message.content == EXPECTED_TEXT for choice in completion.choices)
    assert_usage_consistent(completion.usage)
    assert completion.usage.completion_tokens == 2 * 4


def test_seed_stop_logprobs_pass_through(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="chat",
        messages=USER,
        seed=42,
        stop=["\n\n", "END"],
        logprobs=True,
        top_logprobs=2,
        temperature=0.2,
        max_completion_tokens=64,
    )
    assert completion.choices[0].message.content == EXPECTED_TEXT
    assert completion.choices[0].finish_reason == "stop"


def test_stream_with_n_two_streams_both_choices(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="chat", messages=USER, n=2, stream=True))
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert texts == {0: EXPECTED_TEXT, 1: EXPECTED_TEXT}


# --- embeddings ------------------------------------------------------------------------------


def assert_unit_vector(vector) -> None:
    assert all(isinstance(value, float) for value in vector), vector
    assert math.isclose(sum(value * value for value in vector), 1.0, rel_tol=1e-4)


def test_embeddings_single_string(client: openai.OpenAI) -> None:
    response = client.embeddings.create(model="embed", input="hello world", encoding_format="float")
    assert response.object == "list"
    assert len(response.data) == 1
    assert response.data[0].index == 0
    vector = response.data[0].embedding
    assert len(vector) == 8
    assert_unit_vector(vector)
    assert response.usage.prompt_tokens == 2


def test_embeddings_list_input(client: openai.OpenAI) -> None:
    inputs = ["first text", "second text", "third"]
    response = client.embeddings.create(model="embed", input=inputs, encoding_format="float")
    assert [item.index for item in response.data] == [0, 1, 2]
    vectors = [item.embedding for item in response.data]
    assert len({len(vector) for vector in vectors}) == 1
    assert len(vectors[0]) > 0
    for vector in vectors:
        assert_unit_vector(vector)
    assert vectors[0] != vectors[1] != vectors[2]
    # Deterministic: the same text embeds the same on its own.
    alone = client.embeddings.create(model="embed", input="second text", encoding_format="float")
    assert alone.data[0].embedding == pytest.approx(vectors[1], rel=1e-6)


def test_embeddings_base64(client: openai.OpenAI) -> None:
    text = "base64 please"
    floats = client.embeddings.create(model="embed", input=text, encoding_format="float")
    expected = floats.data[0].embedding

    # Without encoding_format the SDK asks for base64 itself and decodes it to floats.
    decoded_by_sdk = client.embeddings.create(model="embed", input=text)
    assert decoded_by_sdk.data[0].embedding == pytest.approx(expected, rel=1e-6)

    # Asked for explicitly, base64 comes back as the string: little-endian f32.
    explicit = client.embeddings.create(model="embed", input=text, encoding_format="base64")
    encoded = explicit.data[0].embedding
    assert isinstance(encoded, str), type(encoded)
    raw = base64.b64decode(encoded)
    assert len(raw) == 4 * len(expected)
    assert list(struct.unpack(f"<{len(expected)}f", raw)) == pytest.approx(expected, rel=1e-6)


def test_embeddings_dimensions(client: openai.OpenAI) -> None:
    response = client.embeddings.create(
        model="embed", input="sized", dimensions=16, encoding_format="float"
    )
    assert len(response.data[0].embedding) == 16


# --- models ----------------------------------------------------------------------------------


def test_models_list_contains_configured_names(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert sorted(ids) == sorted(MODEL_NAMES)


def test_models_retrieve(client: openai.OpenAI) -> None:
    model = client.models.retrieve("chat")
    assert model.id == "chat"
    assert model.object == "model"
    assert client.models.retrieve("limited-fallback").id == "limited-fallback"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.status_code == 404


# --- errors ----------------------------------------------------------------------------------


def test_empty_messages_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="chat", messages=[])
    assert caught.value.status_code == 400
    assert caught.value.param == "messages"
    assert caught.value.type == "invalid_request_error"


def test_wrong_api_key_is_authentication_error(landfall: Landfall) -> None:
    with openai.OpenAI(base_url=landfall.base_url, api_key="wrong-key", max_retries=0, timeout=30) as bad:
        with pytest.raises(openai.AuthenticationError) as caught:
            bad.chat.completions.create(model="chat", messages=USER)
        assert caught.value.status_code == 401
        assert caught.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=USER)
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")


def test_rate_limited_model_is_rate_limit_error(
    client: openai.OpenAI, limited_upstream: LimitedUpstream
) -> None:
    before = limited_upstream.hit_count()
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="limited", messages=USER)
    error = caught.value
    assert error.status_code == 429
    assert error.type == "rate_limit_error"
    retry_after = error.response.headers.get("retry-after")
    assert retry_after is not None, dict(error.response.headers)
    assert int(retry_after) >= 1
    assert limited_upstream.hit_count() > before, "the 429 upstream was never called"


def test_wrong_type_is_unprocessable(client: openai.OpenAI, http: httpx.Client) -> None:
    bad_messages = [{"role": "user", "content": 5}]
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(
            model="chat", messages=USER, extra_body={"messages": bad_messages}
        )
    assert caught.value.status_code == 422

    response = http.post(
        "/v1/chat/completions",
        json={"model": "chat", "messages": bad_messages},
        headers=auth_headers(),
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]


# --- fallback --------------------------------------------------------------------------------


def test_fallback_from_dead_provider(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="fallback", messages=USER)
    assert raw.headers.get(TARGET) == MOCK_CHAT_TARGET
    # The dead target was tried (and possibly retried) before the mock served.
    assert int(raw.headers[ATTEMPTS]) >= 2
    assert raw.parse().choices[0].message.content == EXPECTED_TEXT


def test_streamed_fallback_from_dead_provider(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="fallback", messages=USER, stream=True
    )
    assert raw.headers.get(TARGET) == MOCK_CHAT_TARGET
    _, text = collect_stream(raw.parse())
    assert text == EXPECTED_TEXT


def test_rate_limited_first_target_falls_back(
    client: openai.OpenAI, limited_upstream: LimitedUpstream
) -> None:
    """The first target answers 429 → the second serves, and the headers say so."""
    before = limited_upstream.hit_count()
    raw = client.chat.completions.with_raw_response.create(model="limited-fallback", messages=USER)
    assert raw.status_code == 200
    assert raw.headers.get(TARGET) == MOCK_CHAT_TARGET
    assert raw.headers.get(ATTEMPTS) == "2"
    assert limited_upstream.hit_count() == before + 1
    assert raw.parse().choices[0].message.content == EXPECTED_TEXT


# --- raw HTTP: what the SDK never sends -------------------------------------------------------


def test_wrong_content_type_is_415(http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions",
        content=json.dumps({"model": "chat", "messages": USER}),
        headers={**auth_headers(), "Content-Type": "text/plain"},
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def oversized_body() -> bytes:
    body = json.dumps(
        {"model": "chat", "messages": [{"role": "user", "content": "x" * 100_000}]}
    ).encode()
    assert len(body) > MAX_BODY_BYTES
    return body


def test_oversized_body_is_413(http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions",
        content=oversized_body(),
        headers={**auth_headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_oversized_chunked_body_is_413(http: httpx.Client) -> None:
    body = oversized_body()

    def pieces():
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    # A generator has no length, so it goes out chunked: the limit must hold while reading.
    response = http.post(
        "/v1/chat/completions",
        content=pieces(),
        headers={**auth_headers(), "Content-Type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_body_under_the_limit_is_served(client: openai.OpenAI) -> None:
    text = "y " * 20_000  # 40 KB, under the 64 KiB limit
    completion = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": text}]
    )
    assert completion.choices[0].message.content == "echo: " + text
