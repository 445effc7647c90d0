"""A fresh ``landfall serve --model FILE`` (no configuration file: the embedded defaults) runs
SmolLM2-135M-Instruct in process and answers the ``openai`` SDK, stream and not."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator

import openai
import pytest

from conftest import ADMIN_KEY, REQUEST_TIMEOUT_S, _binary, _clean_env, _free_port, _stop, _tail, _wait_healthy, httpx


def _smollm2() -> Path | None:
    root = Path(os.environ.get("LANDFALL_TEST_MODELS") or Path.home() / ".cache" / "landfall-test")
    path = root / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


@pytest.fixture(scope="module")
def local_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    model = _smollm2()
    if model is None:
        if os.environ.get("LANDFALL_REQUIRE_TEST_MODELS") == "1":
            pytest.fail("SmolLM2 is missing: run scripts/fetch-test-models.sh")
        pytest.skip("SmolLM2 not found (run scripts/fetch-test-models.sh)")
    workdir = tmp_path_factory.mktemp("local-serve")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = _clean_env()
    env["LANDFALL__AUTH__ADMIN_KEY"] = ADMIN_KEY
    stderr_path = workdir / "stderr.log"
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [str(_binary("LANDFALL_BIN")), "serve", "--model", str(model), "--listen", f"127.0.0.1:{port}"],
            cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )
    try:
        if not _wait_healthy(process, url, stderr_path):
            pytest.fail(f"landfall exited early; stderr:\n{_tail(stderr_path)}")
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=url, headers=admin, timeout=REQUEST_TIMEOUT_S, trust_env=False) as http:
            assert http.post("/admin/v1/tenants", json={"id": "local-e2e"}).status_code == 201
            key = http.post("/admin/v1/keys", json={"tenant_id": "local-e2e"}).json()["secret"]
            models = http.get("/admin/v1/models").json()["data"]
            assert [(m["id"], m["status"]) for m in models] == [("local", "ready")], models
        yield openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120.0)
    finally:
        _stop(process)


def test_the_default_local_alias_answers(local_client: openai.OpenAI) -> None:
    assert [model.id for model in local_client.models.list()] == ["local"]
    completion = local_client.chat.completions.create(
        model="local",
        messages=[{"role": "user", "content": "List three primary colors."}],
        temperature=0,
        max_tokens=16,
    )
    text = completion.choices[0].message.content
    assert text.startswith("The primary colors are:"), text
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.prompt_tokens == 35
    assert completion.usage.completion_tokens == 16


def test_the_default_local_alias_streams_token_by_token(local_client: openai.OpenAI) -> None:
    stream = local_client.chat.completions.create(
        model="local",
        messages=[{"role": "user", "content": "List three primary colors."}],
        temperature=0,
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert "".join(pieces).startswith("The primary colors are:")
    assert len(pieces) >= 10
    assert finish == "length"
    assert usage is not None and usage.completion_tokens == 16
