#!/usr/bin/env python3
"""Agent benchmarks for scripts/bench-agents.sh (standard library and wrk only).

Starts landfall-mock-upstream and one landfall (release builds) on 127.0.0.1, and times with
wrk, one after another, at 1 and 16 connections:

  direct        POST /v1/chat/completions on the mock upstream itself (the floor)
  chat          POST /v1/chat/completions through landfall (one governed model call)
  responses     POST /v1/responses, text in, text out, stored (one model turn)
  prompt        the same with a stored prompt template rendered into it
  tool          POST /v1/responses with the built-in `sql` tool: the model calls it, landfall
                runs a read-only query on SQLite, the model answers (two turns and a tool)
  conversation  POST /v1/responses continuing one conversation (read the window, append)
  memory        POST /v1/responses with `user`, whose 200 long-term memories are compared
                with the input (one embedding call through the gateway, cosine over 200)

and writes the section "## Agents (issue 8)" of docs/benchmarks.md: req/s, p50, p99 and each
scenario's cost over `chat` (p50 difference, at 1 connection).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SECTION = "## Agents (issue 8)"


def start(command: list[str], log: Path, pattern: str, timeout_s: float = 20) -> tuple[subprocess.Popen, str]:
    """Starts `command`, waits for `pattern` (a regex with one group) on its stdout/stderr."""
    out = open(log, "w")
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        match = re.search(pattern, log.read_text(errors="replace"))
        if match:
            return process, match.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    sys.exit(f"{command[0]} did not start:\n{log.read_text(errors='replace')[-2000:]}")


def call(port: int, method: str, path: str, body: dict | None = None, key: str = "") -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    connection.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = connection.getresponse()
    payload = response.read()
    if response.status >= 300:
        sys.exit(f"{method} {path}: {response.status} {payload[:500]!r}")
    return json.loads(payload or b"null")


def wrk(url: str, body: dict, connections: int, duration: str) -> dict:
    env = dict(os.environ, BENCH_BODY=json.dumps(body))
    script = Path(__file__).with_name("post.lua")
    threads = min(connections, 2)
    output = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}", "--timeout", "10s",
         "-s", str(script), url],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    line = next(line for line in output.splitlines() if line.startswith("@@RESULT "))
    result = json.loads(line.removeprefix("@@RESULT "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    return result


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def config(upstream: str, work: Path, shop: Path) -> str:
    return f"""\
[auth]
allow_anonymous = true
admin_key = "bench-admin-key-0123456789"

[storage.metadata]
type = "sqlite"
path = "{work / 'landfall.db'}"

[shedding]
enabled = false

[knowledge]
index_dir = "{work / 'index'}"

[knowledge.embedder]
type = "gateway"
model = "emb"
dimensions = 8

[agents]
history_turns = 10

[providers.mock]
type = "openai"
base_url = "http://{upstream}/v1"

[models.bench]
targets = [{{ provider = "mock", model = "bench" }}]

[models.emb]
targets = [{{ provider = "mock", model = "mock-embed" }}]

[tools.shop]
type = "sql"
url = "sqlite://{shop}"
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--landfall", required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--docs", default="docs/benchmarks.md")
    parser.add_argument("--duration", default="10s")
    parser.add_argument("--version", default="")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="landfall-bench-agents-"))
    shop = work / "shop.db"
    with sqlite3.connect(shop) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, total REAL)")
        connection.executemany("INSERT INTO orders VALUES (?, ?, ?)", [(i, f"c{i}", i * 1.5) for i in range(1, 101)])
    upstream, upstream_addr = start([args.upstream, "--listen", "127.0.0.1:0", "--workers", "1"],
                                    work / "upstream.log", r"listening on (127\.0\.0\.1:\d+)")
    (work / "landfall.toml").write_text(config(upstream_addr, work, shop))
    landfall, landfall_addr = start(
        [args.landfall, "serve", "--config", str(work / "landfall.toml"), "--listen", "127.0.0.1:0"],
        work / "landfall.log", r"listening[^\n]*?(127\.0\.0\.1:\d+)")
    port = int(landfall_addr.rsplit(":", 1)[1])
    processes = [upstream, landfall]
    try:
        admin = "bench-admin-key-0123456789"
        call(port, "POST", "/admin/v1/prompts", {
            "id": "support",
            "role": "You are the support assistant of {{ company }}.",
            "task": "Answer questions about the {{ product }} from its manual.",
            "constraints": ["Answer only from the manual.", "{% if escalate %}Offer a ticket.{% endif %}"],
            "output_format": "At most 3 sentences.",
            "examples": [{"input": "Reset it?", "output": "Hold power for 10 s."}],
            "variables": {"type": "object", "required": ["company", "product"],
                          "properties": {"company": {"type": "string"}, "product": {"type": "string"},
                                         "escalate": {"type": "boolean", "default": False}}},
        }, key=admin)
        conversation = call(port, "POST", "/v1/conversations", {})["id"]
        for index in range(200):
            call(port, "POST", "/v1/memories", {"user": "alice", "text": f"fact number {index}"})
        query = "SELECT customer, total FROM orders WHERE id < 6"
        landfall_url = f"http://127.0.0.1:{port}"
        scenarios = [
            ("direct", f"http://{upstream_addr}/v1/chat/completions",
             {"model": "bench", "messages": [{"role": "user", "content": "hello"}]}),
            ("chat", f"{landfall_url}/v1/chat/completions",
             {"model": "bench", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 256}),
            ("responses", f"{landfall_url}/v1/responses", {"model": "bench", "input": "hello"}),
            ("prompt", f"{landfall_url}/v1/responses",
             {"model": "bench", "input": "hello",
              "prompt": {"id": "support", "variables": {"company": "Acme", "product": "X200"}}}),
            ("tool", f"{landfall_url}/v1/responses",
             {"model": "bench", "input": query, "tools": [{"type": "landfall", "name": "shop"}]}),
            ("conversation", f"{landfall_url}/v1/responses",
             {"model": "bench", "input": "hello", "conversation": conversation}),
            ("memory", f"{landfall_url}/v1/responses", {"model": "bench", "input": "hello", "user": "alice"}),
        ]
        # Each scenario answers correctly before it is timed.
        check = call(port, "POST", "/v1/responses", scenarios[4][2])
        assert any(item["type"] == "mcp_call" and "| c1 | 1.5 |" in (item.get("output") or "")
                   for item in check["output"]), check
        results = {}
        for name, url, body in scenarios:
            for connections in (1, 16):
                result = wrk(url, body, connections, args.duration)
                results[(name, connections)] = result
                print(f"{name:13} c={connections:2}  {result['rps']:9.1f} req/s  "
                      f"p50 {result['p50_us']} µs  p99 {result['p99_us']} µs  errors {result['errors']}",
                      file=sys.stderr)
        items = call(port, "GET", f"/v1/conversations/{conversation}/items?limit=1")
        peak = rss_mib(landfall.pid)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)

    lines = [
        SECTION,
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `scripts/bench-agents.sh` "
        f"(wrk, {args.duration} per scenario; landfall {args.version}, release; "
        f"{os.cpu_count()} CPUs, {platform.machine()}). wrk, landfall and the mock upstream share the "
        "machine's cores. Landfall runs on SQLite with its defaults (audit log, metrics, access log on), "
        "shedding off, `[agents] history_turns = 10`; the mock upstream echoes the last user text, "
        "calls the first tool with `{\"query\": <input>}` and answers `tool said: …` after a tool result.",
        "",
        "| scenario | what one request does | conns | req/s | p50 | p99 | errors | p50 over `chat` |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    what = {
        "direct": "the mock upstream alone",
        "chat": "one chat completion through landfall",
        "responses": "one model turn, response stored",
        "prompt": "+ a stored template rendered (4 sections, 1 example)",
        "tool": "2 model turns + a read-only SQL query on SQLite",
        "conversation": "+ read the conversation's window, append 2 items",
        "memory": "+ embed the input, cosine over the user's 200 memories",
    }
    base = results[("chat", 1)]["p50_us"]
    for (name, connections), result in results.items():
        over = "–" if name in ("direct", "chat") or connections != 1 else f"{result['p50_us'] - base:+} µs"
        lines.append(
            f"| {name} | {what[name]} | {connections} | {result['rps']:,.0f} | {result['p50_us']} µs | "
            f"{result['p99_us']} µs | {result['errors']} | {over} |")
    total_items = "has more" if items.get("has_more") else "all"
    lines += [
        "",
        f"The conversation grew to thousands of items during the run ({total_items} listed after it); "
        "a response reads only the newest `history_turns × 32` of them, so its cost does not grow with "
        f"the conversation. Peak RSS of landfall over the whole run: {peak:.1f} MiB.",
        "",
        "Reproduce: `scripts/bench-agents.sh` (env `BENCH_DURATION=10s`, `BENCH_SKIP_BUILD=1`).",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    docs = Path(args.docs)
    text = docs.read_text()
    start_at = text.find(SECTION)
    if start_at >= 0:
        end_at = text.find("\n## ", start_at + len(SECTION))
        text = text[:start_at] + report + (text[end_at + 1:] if end_at >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + report
    docs.write_text(text)


if __name__ == "__main__":
    main()
