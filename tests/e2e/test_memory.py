"""Prompt templates and conversations through the official ``openai`` SDK:
``client.responses.create(prompt=…)`` with a template saved through the admin API, and
``client.conversations`` (create, items, delete) continued by ``responses.create(conversation=…)``.

The upstream is ``landfall-mock-upstream``: it echoes the last user text.
"""

from __future__ import annotations

import openai
import pytest

from conftest import Landfall, admin

TEMPLATE = {
    "id": "e2e-support",
    "role": "You are the support assistant of {{ company }}.",
    "task": "Answer questions about the {{ product }}.",
    "constraints": ["Answer only from the manual."],
    "examples": [{"input": "Reset it?", "output": "Hold power for 10 s."}],
    "variables": {
        "type": "object",
        "properties": {"company": {"type": "string"}, "product": {"type": "string"}},
        "required": ["company", "product"],
    },
}


def test_a_response_renders_a_stored_prompt(client: openai.OpenAI, landfall: Landfall) -> None:
    saved = admin(landfall, "POST", "/prompts", TEMPLATE)
    assert saved.status_code in (201, 409), saved.text
    response = client.responses.create(
        model="chat",
        input="does it float?",
        prompt={"id": "e2e-support", "variables": {"company": "Acme", "product": "X200"}},
    )
    assert response.status == "completed"
    assert response.output_text == "echo: does it float?"
    assert response.prompt is not None and response.prompt.id == "e2e-support"
    assert response.prompt.version == "1"

    preview = admin(
        landfall,
        "POST",
        "/prompts/e2e-support/render",
        {"variables": {"company": "Acme", "product": "X200"}},
    )
    assert preview.status_code == 200, preview.text
    assert preview.json()["instructions"].startswith("You are the support assistant of Acme.")

    with pytest.raises(openai.BadRequestError) as error:
        client.responses.create(
            model="chat", input="x", prompt={"id": "e2e-support", "variables": {"company": "A"}}
        )
    assert "product" in str(error.value)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="chat", input="x", prompt={"id": "no-such-prompt"})


def test_a_conversation_is_continued_and_kept(client: openai.OpenAI) -> None:
    conversation = client.conversations.create(
        metadata={"case": "e2e"},
        items=[{"type": "message", "role": "user", "content": "I bought an X200"}],
    )
    assert conversation.id.startswith("conv_")
    try:
        first = client.responses.create(
            model="chat", input="can I return it?", conversation=conversation.id
        )
        assert first.output_text == "echo: can I return it?"
        client.responses.create(model="chat", input="how long?", conversation=conversation.id)
        items = client.conversations.items.list(conversation.id, order="asc")
        texts = [item.content[0].text for item in items.data if item.type == "message"]
        assert texts == [
            "I bought an X200",
            "can I return it?",
            "echo: can I return it?",
            "how long?",
            "echo: how long?",
        ]
        added = client.conversations.items.create(
            conversation.id,
            items=[{"type": "message", "role": "user", "content": "order 42"}],
        )
        assert len(added.data) == 1
        fetched = client.conversations.retrieve(conversation.id)
        assert fetched.metadata == {"case": "e2e"}
    finally:
        deleted = client.conversations.delete(conversation.id)
        assert deleted.deleted
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conversation.id)
