"""Knowledge bases through the official ``openai`` SDK: ``files``, ``vector_stores`` (with
file batches) and ``vector_stores.search``, including a per-file error and citations."""

from __future__ import annotations

import io
import time

import openai
import pytest

from conftest import Landfall

MANUAL = b"""# Pump manual

## Installation

Mount the pump on a level concrete base and tighten the four anchor bolts to 40 Nm.

## Maintenance

Replace the impeller seal every 2000 operating hours. Drain the housing before winter.
"""

POLICY = "报销政策\n\n医疗费用报销需要提供医院开具的发票原件，并在三十天内提交。".encode("gbk")


def test_files_vector_stores_and_search(client: openai.OpenAI, landfall: Landfall) -> None:
    manual = client.files.create(file=("pump.md", io.BytesIO(MANUAL)), purpose="assistants")
    assert manual.id.startswith("file-") and manual.bytes == len(MANUAL)
    assert client.files.retrieve(manual.id).filename == "pump.md"
    assert client.files.content(manual.id).read() == MANUAL
    policy = client.files.create(file=("policy.txt", io.BytesIO(POLICY)), purpose="assistants")
    junk = client.files.create(file=("junk.bin", io.BytesIO(b"\x7fELF\x02\x01\x01\x00\xff")), purpose="assistants")
    assert manual.id in [file.id for file in client.files.list()]

    store = client.vector_stores.create(name="e2e-manuals", metadata={"team": "support"})
    assert store.object == "vector_store" and store.metadata == {"team": "support"}
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id, file_ids=[manual.id, policy.id, junk.id], poll_interval_ms=100
    )
    assert batch.file_counts.total == 3
    assert batch.file_counts.completed == 2 and batch.file_counts.failed == 1, batch
    failed = client.vector_stores.files.retrieve(file_id=junk.id, vector_store_id=store.id)
    assert failed.status == "failed" and failed.last_error is not None
    assert "not a document" in failed.last_error.message or failed.last_error.code == "unsupported_file"

    files = client.vector_stores.files.list(vector_store_id=store.id, filter="completed")
    assert sorted(file.id for file in files) == sorted([manual.id, policy.id])

    results = client.vector_stores.search(vector_store_id=store.id, query="how often replace the impeller seal", max_num_results=3)
    hits = list(results)
    assert hits and hits[0].file_id == manual.id and hits[0].filename == "pump.md"
    assert "2000 operating hours" in hits[0].content[0].text
    assert 0 < hits[0].score <= 1
    citation = hits[0].model_extra["landfall"]
    assert "Maintenance" in citation["heading_path"] and citation["char_end"] > citation["char_start"]

    chinese = list(client.vector_stores.search(vector_store_id=store.id, query="医疗费用怎么报销"))
    assert chinese and chinese[0].file_id == policy.id

    filtered = client.vector_stores.files.update(
        vector_store_id=store.id, file_id=manual.id, attributes={"product": "pump"}
    )
    assert filtered.attributes == {"product": "pump"}
    only_pump = list(
        client.vector_stores.search(
            vector_store_id=store.id,
            query="报销 seal",
            filters={"type": "eq", "key": "product", "value": "pump"},
        )
    )
    assert only_pump and all(hit.file_id == manual.id for hit in only_pump)

    client.vector_stores.files.delete(vector_store_id=store.id, file_id=manual.id)
    after = list(client.vector_stores.search(vector_store_id=store.id, query="impeller seal"))
    assert all(hit.file_id != manual.id for hit in after)

    renamed = client.vector_stores.update(vector_store_id=store.id, name="renamed")
    assert renamed.name == "renamed"
    assert client.vector_stores.delete(vector_store_id=store.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(vector_store_id=store.id)
    assert client.files.delete(policy.id).deleted


def test_grounded_chat_completion_cites_the_store(client: openai.OpenAI) -> None:
    manual = client.files.create(file=("pump-care.md", io.BytesIO(MANUAL)), purpose="assistants")
    store = client.vector_stores.create(name="e2e-grounded", file_ids=[manual.id])
    for _ in range(200):
        if client.vector_stores.retrieve(store.id).file_counts.in_progress == 0:
            break
        time.sleep(0.05)
    # The mock upstream echoes the last user message, so the "[1]" comes back in the answer.
    completion = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "What does [1] say about the impeller seal?"}],
        extra_body={"knowledge": {"vector_store_ids": [store.id], "max_num_results": 2}},
    )
    message = completion.choices[0].message
    assert "[1]" in (message.content or "")
    annotation = message.model_dump()["annotations"][0]
    assert annotation["type"] == "file_citation"
    assert annotation["file_citation"]["file_id"] == manual.id
    assert completion.model_extra["landfall"]["sources"][0]["filename"] == "pump-care.md"
