"""The Responses API through the official ``openai`` SDK: ``client.responses.create`` with and
without streaming, a client-run function tool continued by ``previous_response_id``, stored
responses retrieved and deleted, and ``file_search`` over a vector store with citations.

The upstream is ``landfall-mock-upstream``: it echoes the last user text, calls the first tool
with ``{"query": <user text>}`` when tools are given, and answers ``tool said: <output>`` after
a tool result.
"""

from __future__ import annotations

import io
import json

import openai
import pytest

PROMPT = "hello there responses"
LOOKUP_TOOL = {
    "type": "function",
    "name": "lookup_order",
    "description": "Looks an order up by the customer's words.",
    "parameters": {
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
        "additionalProperties": False,
    },
}
MANUAL = b"""# Pump manual

## Maintenance

Replace the impeller seal every 2000 operating hours. Drain the housing before winter.
"""


def test_a_text_response_and_its_usage(client: openai.OpenAI) -> None:
    response = client.responses.create(model="chat", input=PROMPT, instructions="Be brief.")
    assert response.object == "response" and response.status == "completed"
    assert response.id.startswith("resp_")
    assert response.output_text == f"echo: {PROMPT}"
    assert [item.type for item in response.output] == ["message"]
    usage = response.usage
    assert usage is not None and usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_a_function_tool_round_trip_and_stored_responses(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model="chat", input="where is order 42?", tools=[LOOKUP_TOOL], store=True
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1, first.output
    call = calls[0]
    assert call.name == "lookup_order" and call.call_id
    assert json.loads(call.arguments) == {"query": "where is order 42?"}

    second = client.responses.create(
        model="chat",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "shipped"}],
        tools=[LOOKUP_TOOL],
    )
    assert second.output_text == "tool said: shipped"
    assert second.previous_response_id == first.id

    again = client.responses.retrieve(second.id)
    assert again.id == second.id and again.output_text == second.output_text
    client.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(second.id)


def test_a_streamed_response_has_the_documented_events(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="chat", input=PROMPT, stream=True))
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"], kinds
    assert kinds[-1] == "response.completed", kinds
    for kind in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ):
        assert kind in kinds, (kind, kinds)
    numbers = [event.sequence_number for event in events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text == f"echo: {PROMPT}"
    assert events[-1].response.output_text == text


def test_file_search_answers_with_citations(client: openai.OpenAI) -> None:
    manual = client.files.create(file=("pump.md", io.BytesIO(MANUAL)), purpose="assistants")
    store = client.vector_stores.create(name="e2e-responses")
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id, file_ids=[manual.id], poll_interval_ms=100
    )
    assert batch.file_counts.completed == 1, batch
    try:
        response = client.responses.create(
            model="chat",
            input="how often replace the impeller seal",
            tools=[{"type": "file_search", "vector_store_ids": [store.id]}],
            include=["file_search_call.results"],
        )
        searches = [item for item in response.output if item.type == "file_search_call"]
        assert len(searches) == 1 and searches[0].status == "completed", response.output
        assert searches[0].results and searches[0].results[0].file_id == manual.id
        assert "2000 operating hours" in response.output_text
        message = next(item for item in response.output if item.type == "message")
        annotations = message.content[0].annotations
        assert annotations, message
        assert all(note.type == "file_citation" and note.file_id == manual.id for note in annotations)
    finally:
        client.vector_stores.delete(vector_store_id=store.id)
        client.files.delete(manual.id)


def test_bad_requests_are_openai_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.responses.create(model="chat", input=PROMPT, previous_response_id="resp_missing")
    assert "resp_missing" in str(error.value)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input=PROMPT)


def test_a_built_in_sql_tool_runs_on_the_server(client: openai.OpenAI) -> None:
    # The mock model calls the first tool with the user's text as `query`.
    query = "SELECT customer, total FROM orders ORDER BY id"
    response = client.responses.create(
        model="chat", input=query, tools=[{"type": "landfall", "name": "shop"}]
    )
    calls = [item for item in response.output if item.type == "mcp_call"]
    assert len(calls) == 1, response.output
    call = calls[0]
    assert call.server_label == "landfall" and call.name == "shop"
    assert json.loads(call.arguments) == {"query": query}
    assert call.output is not None and "| Ada | 120.5 |" in call.output
    assert response.output_text.startswith("tool said: | customer | total |")

    refused = client.responses.create(
        model="chat", input="DELETE FROM orders", tools=[{"type": "landfall", "name": "shop"}]
    )
    failed = [item for item in refused.output if item.type == "mcp_call"]
    assert failed and failed[0].error and "read-only" in failed[0].error


def test_an_unknown_built_in_tool_is_a_clear_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.responses.create(
            model="chat", input="x", tools=[{"type": "landfall", "name": "nope"}]
        )
    assert "no tool `nope`" in str(error.value)
