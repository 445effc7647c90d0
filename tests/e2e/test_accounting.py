"""Accounting as an operator and the ``openai`` SDK see it: request ids on responses, token
counters in ``/metrics`` that match the usage the SDK reported, and the request in the audit
log and the usage report."""

from __future__ import annotations

import re
import time

import openai

from conftest import REQUEST_TIMEOUT_S, Landfall, admin, create_key, httpx

USER = [{"role": "user", "content": "count these tokens exactly"}]


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        series = match.group(2) or ""
        if all(f'{key}="{value}"' in series for key, value in labels.items()):
            total += float(match.group(3))
    return total


def test_request_ids_metrics_audit_and_usage_agree_with_the_sdk(landfall: Landfall) -> None:
    tenant = f"acct{int(time.time() * 1000) % 10**9}"
    key = create_key(landfall, {"id": tenant}, {})
    with openai.OpenAI(
        base_url=landfall.base_url, api_key=key, max_retries=0, timeout=REQUEST_TIMEOUT_S
    ) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="chat", messages=USER, extra_headers={"x-request-id": "e2e-accounting-1"}
        )
        assert raw.headers["x-request-id"] == "e2e-accounting-1"
        first = raw.parse().usage
        stream = client.chat.completions.create(
            model="chat", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        streamed = [chunk.usage for chunk in stream if chunk.usage is not None][-1]
        generated = client.chat.completions.with_raw_response.create(model="chat", messages=USER)
        assert generated.headers["x-request-id"].startswith("req_")

    expected_input = first.prompt_tokens + streamed.prompt_tokens + generated.parse().usage.prompt_tokens
    expected_output = (
        first.completion_tokens + streamed.completion_tokens + generated.parse().usage.completion_tokens
    )
    metrics = httpx.get(f"{landfall.url}/metrics", timeout=REQUEST_TIMEOUT_S, trust_env=False)
    assert metrics.status_code == 200
    assert metric_sum(metrics.text, "landfall_tokens_total", tenant=tenant, type="input") == expected_input
    assert metric_sum(metrics.text, "landfall_tokens_total", tenant=tenant, type="output") == expected_output

    records: list[dict] = []
    for _ in range(100):
        page = admin(landfall, "GET", f"/audit?tenant_id={tenant}&kind=request&order=asc")
        assert page.status_code == 200, page.text
        records = page.json()["data"]
        if len(records) == 3:
            break
        time.sleep(0.05)
    assert [record["request_id"] for record in records][0] == "e2e-accounting-1"
    assert records[1]["record"]["stream"] is True
    assert sum(record["record"]["usage"]["input_tokens"] for record in records) == expected_input
    assert all("secret" not in str(record) and key not in str(record) for record in records)

    usage = admin(landfall, "GET", f"/usage?tenant_id={tenant}&group_by=tenant,key&bucket=day")
    rows = usage.json()["data"]
    assert len(rows) == 1 and rows[0]["requests"] == 3
    assert rows[0]["output_tokens"] == expected_output
