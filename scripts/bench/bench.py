#!/usr/bin/env python3
"""Measurement and reporting half of scripts/bench-gateway.sh (standard library only).

  bench.py measure --name NAME --url http://127.0.0.1:PORT --out FILE [--pid PID ...]
      Runs the four wrk scenarios against NAME, records wrk's numbers, the CPU time each
      process spent during each scenario, the peak RSS (VmHWM) of the gateway's process tree
      after the load, and checks that streamed responses end with `data: [DONE]`.

  bench.py report --meta META.json --results DIR --docs docs/benchmarks.md
      Prints the markdown report and writes it into docs/benchmarks.md as the section
      "## Gateway overhead (issue 2)", replacing that section if present.

  bench.py report-governance --meta META.json --results DIR --docs docs/benchmarks.md
      The same for the bare and governed gateways measured in rounds (gov-CONFIG-ROUND.json)
      and the Redis limiter benchmark (limiter-*.json): the section
      "## Governance overhead (issue 3)".

  bench.py report-accounting --meta META.json --results DIR --docs docs/benchmarks.md
      The same for the configurations with and without metrics, audit log and access log
      (acc-CONFIG-ROUND.json), the audit records counted after each landfall stopped
      (acc-CONFIG.{metrics,stop.json,store.json,verify.json}) and the audit writer benchmark
      (audit-bench.txt): the section "## Accounting overhead (issue 4)".

Requests carry `Authorization: Bearer $BENCH_API_KEY` when it is set (`measure --api-key`
sets it), and none otherwise.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import re
import resource
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
LUA = HERE / "chat.lua"
CHAT_PATH = "/v1/chat/completions"
CLK_TCK = os.sysconf("SC_CLK_TCK")

SCENARIOS = [
    # key, label, stream, threads, connections
    ("nonstream_c1", "non-stream, 1 conn", False, 1, 1),
    ("nonstream_c50", "non-stream, 50 conns", False, 2, 50),
    ("stream_c1", "stream, 1 conn", True, 1, 1),
    ("stream_c50", "stream, 50 conns", True, 2, 50),
]

SECTION = "## Gateway overhead (issue 2)"
GOVERNANCE_SECTION = "## Governance overhead (issue 3)"
ACCOUNTING_SECTION = "## Accounting overhead (issue 4)"
# One small chat completion; max_tokens as in chat.lua.
CHAT_BODY = {"model": "bench", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 256}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- /proc helpers


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # Fields after the command name, which is in parentheses and may contain spaces.
        fields = stat[stat.rfind(")") + 2 :].split()
        kids.setdefault(int(fields[1]), []).append(int(entry))
    return kids


def process_tree(root: int) -> list[int]:
    kids = children_map()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            tree.append(pid)
        todo.extend(kids.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU time all CPUs spent not idle, from the first line of /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory(pids: list[int]) -> dict:
    procs = []
    for pid in pids:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        procs.append(
            {"pid": pid, "comm": comm, "hwm_kb": status_kb(pid, "VmHWM"), "rss_kb": status_kb(pid, "VmRSS")}
        )
    return {
        "hwm_kb": sum(p["hwm_kb"] for p in procs),
        "rss_kb": sum(p["rss_kb"] for p in procs),
        "processes": procs,
    }


# ---------------------------------------------------------------- wrk


def run_wrk(url: str, stream: bool, threads: int, conns: int, duration: str, timeout: str,
            wrk_cpus: str | None, watch: dict[str, list[int]]) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}", f"--timeout={timeout}",
           "--latency", "-s", str(LUA), url.rstrip("/") + CHAT_PATH]
    if wrk_cpus:
        cmd = ["taskset", "-c", wrk_cpus] + cmd
    env = dict(os.environ, BENCH_STREAM="1" if stream else "0")
    before = {name: cpu_seconds(pids) for name, pids in watch.items()}
    kids_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before = machine_busy_seconds()
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    # wrk stops itself after -d; the extra margin covers the --timeout of the last requests.
    seconds = parse_seconds(duration) + parse_seconds(timeout) + 15
    try:
        out, _ = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise SystemExit(f"wrk did not finish within {seconds}s: {' '.join(cmd)}\n{out}")
    wall = time.monotonic() - started
    after = {name: cpu_seconds(pids) for name, pids in watch.items()}
    kids_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_after = machine_busy_seconds()
    match = re.search(r"^@@RESULT (\{.*\})$", out, re.M)
    if proc.returncode != 0 or not match:
        raise SystemExit(f"wrk failed (exit {proc.returncode}): {' '.join(cmd)}\n{out}")
    result = json.loads(match.group(1))
    result["command"] = " ".join(cmd[cmd.index("wrk"):])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors_socket"] = sum(result[k] for k in ("err_connect", "err_read", "err_write", "err_timeout"))
    result["cpu_s"] = {name: round(after[name] - before[name], 2) for name in watch}
    result["cpu_s"]["wrk"] = round(kids_after.ru_utime + kids_after.ru_stime
                                   - kids_before.ru_utime - kids_before.ru_stime, 2)
    # Everything else the machine did meanwhile (other processes, interrupts): should be ~0.
    result["cpu_s"]["other"] = round(max(0.0, busy_after - busy_before - sum(result["cpu_s"].values())), 2)
    result["cpu_s"]["capacity"] = round(wall * os.cpu_count(), 2)
    result["wall_s"] = round(wall, 2)
    result["wrk_output"] = out[: out.find("@@RESULT")].rstrip()
    return result


def parse_seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not match:
        raise SystemExit(f"bad duration {text!r}")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


# ---------------------------------------------------------------- correctness checks


def request_headers() -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if os.environ.get("BENCH_API_KEY"):
        headers["Authorization"] = "Bearer " + os.environ["BENCH_API_KEY"]
    return headers


def post(url: str, body: dict, timeout: float = 30.0) -> tuple[int, dict, bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("POST", CHAT_PATH, body=json.dumps(body), headers=request_headers())
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def check_nonstream(url: str) -> dict:
    status, headers, data = post(url, CHAT_BODY)
    ok = False
    content = None
    if status == 200:
        try:
            content = json.loads(data)["choices"][0]["message"]["content"]
            ok = content == "echo: hello"
        except (ValueError, KeyError, IndexError, TypeError):
            pass
    return {"ok": ok, "status": status, "content": content,
            "ratelimit_headers": sorted(k for k in headers if k.startswith("x-ratelimit-")),
            "cache_header": headers.get("x-landfall-cache")}


STREAM_BODY = json.dumps(dict(CHAT_BODY, stream=True))


def check_one_stream(conn: http.client.HTTPConnection) -> dict:
    """One streamed request on a kept-alive connection, read line by line as it arrives.

    Returns ok/why plus the longest pause seen: before the first event, between events, and
    between `data: [DONE]` and the end of the body (what a client waits for before the stream
    is over)."""
    started = time.perf_counter()
    try:
        conn.request("POST", CHAT_PATH, body=STREAM_BODY, headers=request_headers())
        resp = conn.getresponse()
        last = time.perf_counter()
        gaps, lines = [], []
        while True:
            line = resp.readline()
            now = time.perf_counter()
            if line.strip():
                gaps.append(now - last)
                last = now
                lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
            if not line:
                gaps.append(now - last)  # [DONE] (or the last event) to the end of the body
                break
        status, ctype = resp.status, resp.getheader("content-type", "")
    except (OSError, http.client.HTTPException) as error:
        conn.close()
        return {"ok": False, "why": f"transport: {type(error).__name__}", "max_gap_ms": 0.0, "total_ms": 0.0}
    total_ms = (time.perf_counter() - started) * 1e3
    result = {"ok": False, "why": "", "max_gap_ms": max(gaps) * 1e3, "total_ms": total_ms}
    if status != 200:
        result["why"] = f"status {status}"
    elif not ctype.startswith("text/event-stream"):
        result["why"] = f"content-type {ctype!r}"
    elif not lines or lines[-1].strip() != "data: [DONE]":
        result["why"] = "does not end with data: [DONE]"
    else:
        content = ""
        for line in lines[:-1]:
            if not line.startswith("data:"):
                continue
            try:
                chunk = json.loads(line[5:])
            except ValueError:
                result["why"] = "an event is not JSON"
                return result
            for choice in chunk.get("choices") or []:
                content += (choice.get("delta") or {}).get("content") or ""
        if content != "echo: hello":
            result["why"] = f"content {content!r}"
        else:
            result["ok"] = True
    return result


def check_streams(url: str, count: int, parallel: int, stall_ms: float) -> dict:
    """`count` streamed requests from `parallel` clients, each on one kept-alive connection."""
    parts = urllib.parse.urlsplit(url)
    per_client = [count // parallel + (1 if i < count % parallel else 0) for i in range(parallel)]

    def client(n: int) -> list[dict]:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            return [check_one_stream(conn) for _ in range(n)]
        finally:
            conn.close()

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        results = [r for batch in pool.map(client, per_client) for r in batch]
    failures: dict[str, int] = {}
    for r in results:
        if not r["ok"]:
            failures[r["why"]] = failures.get(r["why"], 0) + 1
    gaps = sorted(r["max_gap_ms"] for r in results)
    totals = sorted(r["total_ms"] for r in results)
    ok = sum(r["ok"] for r in results)
    return {"requests": count, "parallel": parallel, "ok": ok, "failed": count - ok, "failures": failures,
            "stall_ms": stall_ms, "stalled": sum(g > stall_ms for g in gaps),
            "max_gap_ms": round(gaps[-1], 2) if gaps else 0.0,
            "p50_total_ms": round(totals[len(totals) // 2], 2) if totals else 0.0,
            "seconds": round(time.monotonic() - started, 2)}


# ---------------------------------------------------------------- measure


def measure(args: argparse.Namespace) -> None:
    if args.api_key:
        os.environ["BENCH_API_KEY"] = args.api_key  # for wrk (chat.lua) and the checks here
    watch: dict[str, list[int]] = {}
    watch_roots: dict[str, int] = {}
    for item in args.watch or []:
        name, _, pid = item.partition("=")
        watch_roots[name] = int(pid)
    gateway_pids: list[int] = []
    if args.pid:
        gateway_pids = process_tree(args.pid)
        watch["gateway"] = gateway_pids
    if args.upstream_pid:
        watch["upstream"] = [args.upstream_pid]
    result: dict = {"name": args.name, "url": args.url, "scenarios": {}}

    result["nonstream_check"] = check_nonstream(args.url)
    log(f"{args.name}: non-stream sanity check: {result['nonstream_check']}")
    if not result["nonstream_check"]["ok"]:
        raise SystemExit(f"{args.name}: the non-stream sanity request failed")
    if args.expect_ratelimit_headers and not result["nonstream_check"]["ratelimit_headers"]:
        raise SystemExit(f"{args.name}: no x-ratelimit-* headers: the request was not rate limited")
    if gateway_pids:
        result["idle_memory"] = memory(gateway_pids)

    if args.warmup and parse_seconds(args.warmup) > 0:
        log(f"{args.name}: warm-up {args.warmup} at 50 connections")
        warmup = run_wrk(args.url, False, 2, 50, args.warmup, args.timeout, args.wrk_cpus, {})
        result["warmup"] = {"requests": warmup["requests"], "rps": warmup["rps"]}

    for key, label, stream, threads, conns in SCENARIOS:
        if args.pid:  # litellm may fork workers lazily
            watch["gateway"] = process_tree(args.pid)
        for name, root in watch_roots.items():  # e.g. PostgreSQL's backends come and go
            watch[name] = process_tree(root)
        log(f"{args.name}: {label} for {args.duration}")
        res = run_wrk(args.url, stream, threads, conns, args.duration, args.timeout, args.wrk_cpus, watch)
        log(f"{args.name}: {label}: {res['rps']:.0f} req/s, p50 {res['p50_us']} us, p99 {res['p99_us']} us,"
            f" non-2xx {res['err_status']}, socket errors {res['errors_socket']}, cpu {res['cpu_s']}")
        result["scenarios"][key] = res

    if gateway_pids:
        result["memory"] = memory(process_tree(args.pid))
        log(f"{args.name}: peak RSS (VmHWM, process tree) {result['memory']['hwm_kb'] / 1024:.1f} MiB")

    if args.stream_check:
        result["stream_check"] = check_streams(args.url, args.stream_check, args.stream_check_parallel,
                                               args.stall_ms)
        log(f"{args.name}: stream check: {result['stream_check']}")

    Path(args.out).write_text(json.dumps(result, indent=2))


# ---------------------------------------------------------------- report


def fmt_us(us: float | None) -> str:
    if us is None:
        return "n/a"
    if abs(us) >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def fmt_rps(rps: float | None) -> str:
    if rps is None:
        return "n/a"
    return f"{rps:,.0f}" if rps >= 100 else f"{rps:,.1f}"


def passfail(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**PASS**" if ok else "**FAIL**")


def report(args: argparse.Namespace) -> None:
    meta = json.loads(Path(args.meta).read_text())
    results = {}
    for name in ("direct", "landfall", "litellm"):
        path = Path(args.results) / f"{name}.json"
        if path.exists():
            results[name] = json.loads(path.read_text())
    direct, landfall, litellm = (results.get(n) for n in ("direct", "landfall", "litellm"))

    def sc(res: dict | None, key: str) -> dict | None:
        return res["scenarios"].get(key) if res else None

    out: list[str] = [SECTION, ""]
    out.append(f"Measured {meta['date']} by `scripts/bench-gateway.sh` "
               f"(duration {meta['duration']} per scenario, wrk `--timeout {meta['wrk_timeout']}`).")
    out.append("")
    out.append("**Machine.** " + f"{meta['nproc']} CPUs ({meta['cpu_model']}), {meta['mem']} RAM, {meta['kernel']}. "
               "The load generator (wrk), the gateway under test and the mock upstream all run on these "
               "same cores, so every number below includes the cost of the other two processes "
               "competing for CPU. " + meta["pinning"])
    out.append("")
    out.append("**Versions.** " + f"landfall `{meta['landfall_rev']}` (release build); "
               f"LiteLLM {meta['litellm_version']} (`litellm[proxy]`, Python {meta['python_version']}); "
               f"{meta['wrk_version']}; mock upstream `landfall-mock-upstream --workers {meta['upstream_workers']}` "
               "(release build of crates/testkit).")
    out.append("")
    out.append("**Reproduce.** `scripts/bench-gateway.sh` (env: `BENCH_DURATION=10s`, `BENCH_WARMUP=3s`, "
               "`BENCH_WRK_TIMEOUT=10s`, `BENCH_STREAM_CHECK=500`, `BENCH_STALL_MS=25`, `BENCH_PIN=0|1`, `BENCH_LANDFALL_LOG=warn`, `BENCH_SKIP_LITELLM=1`, "
               "`LANDFALL_BENCH_VENV=...`). Per target it runs:")
    out.append("")
    out.append("```")
    for key, label, *_ in SCENARIOS:
        cmd = None
        for res in (direct, landfall, litellm):
            s = sc(res, key)
            if s:
                cmd = s["command"]
                break
        if cmd:
            envs = "BENCH_STREAM=1 " if "stream_" in key and not key.startswith("non") else ""
            cmd = re.sub(r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:PORT", cmd)
            cmd = cmd.replace(str(LUA), "scripts/bench/chat.lua")
            out.append(f"{envs}{cmd}    # {label}")
    out.append("```")
    out.append("")
    out.append("Each request is `POST /v1/chat/completions` with body "
               f"`{json.dumps(CHAT_BODY, separators=(',', ':'))}` "
               "(plus `\"stream\":true` for stream; the mock replies `echo: hello`, 5 SSE events "
               "ending in `data: [DONE]`). For streams wrk times the whole response. "
               "`direct` is wrk against the mock upstream itself.")
    out.append("")
    out.append("**Setup.** " + meta["landfall_settings"] + " " + meta["litellm_settings"])
    out.append("")

    # Main table.
    out.append("| target | scenario | req/s | p50 | p99 | non-2xx | socket errors/timeouts | CPU s: gateway / upstream / wrk / other |")
    out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, res in (("direct", direct), ("landfall", landfall), ("litellm", litellm)):
        if not res:
            continue
        for key, label, *_ in SCENARIOS:
            s = sc(res, key)
            if not s:
                continue
            cpu = s.get("cpu_s", {})
            cpu_text = " / ".join(f"{cpu[k]:.1f}" if k in cpu else "–" for k in ("gateway", "upstream", "wrk", "other"))
            out.append(f"| {name} | {label} | {fmt_rps(s['rps'])} | {fmt_us(s['p50_us'])} | {fmt_us(s['p99_us'])} "
                       f"| {s['err_status']} | {s['errors_socket']} | {cpu_text} |")
    out.append("")
    out.append("CPU seconds are user+system time of each process (tree) during the scenario, out of "
               f"{os.cpu_count()} cores × the duration; \"other\" is the rest of the machine's busy time over the "
               "same interval (other processes, interrupts), a check that nothing else competed.")
    out.append("")

    # Added latency.
    out.append("**Added latency at 1 request in flight** (gateway p50/p99 minus direct p50/p99):")
    out.append("")
    out.append("| gateway | scenario | added p50 | added p99 |")
    out.append("| --- | --- | ---: | ---: |")
    added = {}
    for name, res in (("landfall", landfall), ("litellm", litellm)):
        for key in ("nonstream_c1", "stream_c1"):
            g, d = sc(res, key), sc(direct, key)
            if g and d:
                a50, a99 = g["p50_us"] - d["p50_us"], g["p99_us"] - d["p99_us"]
                added[(name, key)] = (a50, a99)
                label = "non-stream" if key.startswith("non") else "stream"
                out.append(f"| {name} | {label} | {fmt_us(a50)} | {fmt_us(a99)} |")
    out.append("")

    # Ratio.
    ratios = {}
    if landfall and litellm:
        out.append("**Throughput ratio landfall / LiteLLM:**")
        out.append("")
        out.append("| scenario | landfall req/s | LiteLLM req/s | ratio |")
        out.append("| --- | ---: | ---: | ---: |")
        for key, label, *_ in SCENARIOS:
            a, b = sc(landfall, key), sc(litellm, key)
            if a and b:
                ratio = a["rps"] / b["rps"] if b["rps"] > 0 else float("inf")
                ratios[key] = ratio
                out.append(f"| {label} | {fmt_rps(a['rps'])} | {fmt_rps(b['rps'])} | {ratio:,.0f}× |")
        out.append("")
        out.append("LiteLLM runs one worker process, as issue 2 specifies; being Python it keeps about one "
                   "core busy (CPU column above), while landfall's runtime uses both cores. The ratio is "
                   "per process on this 2-core machine.")
        out.append("")

    # Memory.
    out.append("**Peak RSS** (VmHWM from /proc after all four scenarios; for LiteLLM summed over its process tree):")
    out.append("")
    for name, res in (("landfall", landfall), ("litellm", litellm)):
        if res and "memory" in res:
            m = res["memory"]
            idle = res.get("idle_memory", {}).get("rss_kb")
            procs = ", ".join(f"{p['comm']}({p['pid']}) {p['hwm_kb'] / 1024:.1f} MiB" for p in m["processes"])
            idle_text = f"; RSS before load {idle / 1024:.1f} MiB" if idle else ""
            out.append(f"- {name}: **{m['hwm_kb'] / 1024:.1f} MiB**{idle_text} ({procs})")
    out.append("")

    # Stream stalls.
    out.append("**Stream stalls.** wrk counts non-2xx responses and socket errors/timeouts (table above). In "
               "addition, after the load, a Python client (`http.client`, a few clients each on one kept-alive "
               "connection, as SDK connection pools do) sent streamed requests and checked that every "
               "response is 200 `text/event-stream`, every event is JSON, the text is `echo: hello` and the "
               "body ends with `data: [DONE]`; it also timed the longest pause in each response (before the first "
               "event, between events, and from `data: [DONE]` to the end of the body):")
    out.append("")
    for name, res in (("direct", direct), ("landfall", landfall), ("litellm", litellm)):
        if res and "stream_check" in res:
            c = res["stream_check"]
            fails = f"; failures: {c['failures']}" if c["failed"] else ""
            out.append(f"- {name}: {c['ok']}/{c['requests']} complete ({c['parallel']} clients){fails}; "
                       f"{c['stalled']} with a pause > {c['stall_ms']:g} ms (longest {c['max_gap_ms']:.1f} ms); "
                       f"median time per stream {c['p50_total_ms']:.2f} ms")
    out.append("")

    # Targets.
    out.append("**Targets from issue 2** (landfall):")
    out.append("")
    out.append("| target | measured | result |")
    out.append("| --- | --- | --- |")
    parts, verdicts = [], []
    for key, label in (("nonstream_c1", "non-stream"), ("stream_c1", "stream")):
        a = added.get(("landfall", key))
        if a:
            ok = a[1] <= 1000
            verdicts.append(ok)
            aim = "aim met" if a[1] <= 200 else "aim not met"
            parts.append(f"{label}: {fmt_us(a[1])} ({'pass' if ok else 'fail'}, {aim})")
    out.append(f"| added p99 at 1 in flight ≤ 1 ms (aim 200 µs) | {'; '.join(parts) or 'n/a'} | "
               f"{passfail(all(verdicts) if verdicts else None)} |")
    s = sc(landfall, "nonstream_c50")
    out.append(f"| ≥ 10,000 req/s non-stream at 50 connections | {fmt_rps(s['rps']) if s else 'n/a'} req/s | "
               f"{passfail(s['rps'] >= 10000 if s else None)} |")
    if ratios:
        low = min(ratios.values())
        out.append(f"| ≥ 100× LiteLLM's throughput | {', '.join(f'{v:,.0f}×' for v in ratios.values())} "
                   f"(min {low:,.0f}×) | {passfail(low >= 100)} |")
    else:
        out.append("| ≥ 100× LiteLLM's throughput | not measured | n/a |")
    m = landfall.get("memory") if landfall else None
    out.append(f"| RSS ≤ 60 MB under that load | {m['hwm_kb'] / 1024:.1f} MiB peak | "
               f"{passfail(m['hwm_kb'] * 1024 <= 60e6 if m else None)} |" if m else
               "| RSS ≤ 60 MB under that load | n/a | n/a |")
    stalls = None
    if landfall:
        bad = sum(sc(landfall, k)["err_status"] + sc(landfall, k)["errors_socket"]
                  for k in ("stream_c1", "stream_c50") if sc(landfall, k))
        chk = landfall.get("stream_check", {})
        stalls = bad == 0 and chk.get("failed", 1) == 0 and chk.get("stalled", 1) == 0
        out.append(f"| no stream stalls | {bad} wrk errors in stream runs; "
                   f"{chk.get('ok', 0)}/{chk.get('requests', 0)} checked streams end in `data: [DONE]`; "
                   f"{chk.get('stalled', 'n/a')} paused > {chk.get('stall_ms', 0):g} ms "
                   f"(longest {chk.get('max_gap_ms', 0):.1f} ms) | {passfail(stalls)} |")
    out.append("")
    finish_report(out, meta.get("notes"), Path(args.docs))


def finish_report(out: list[str], notes: str | None, docs: Path) -> None:
    """Appends the notes paragraph, prints the section and writes it into ``docs``."""
    if notes:
        out.append("**Notes.** " + notes)
        out.append("")
    text = "\n".join(out).rstrip() + "\n"
    print(text)
    update_docs(docs, text)
    log(f"wrote {docs}")


def update_docs(path: Path, section: str) -> None:
    existing = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = existing.splitlines(keepends=True)
    heading = section.splitlines()[0].rstrip()
    start = next((i for i, l in enumerate(lines) if l.rstrip() == heading), None)
    if start is None:
        new = existing.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines))
                    if lines[i].startswith("## ") or lines[i].startswith("# ")), len(lines))
        rest = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + rest if rest else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


# ---------------------------------------------------------------- report: governance (issue 3)

GOV_CONFIGS = [
    ("bare", "bare"),
    ("embedded", "governed, embedded"),
    ("typical", "governed, embedded, typical limits"),
    ("redis", "governed, Redis + PostgreSQL"),
]


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def gov_summary(runs: list[dict], key: str) -> dict | None:
    scenarios = [run["scenarios"][key] for run in runs if key in run.get("scenarios", {})]
    if not scenarios:
        return None
    rps = [s["rps"] for s in scenarios]

    def cpu_us(name: str) -> float | None:
        values = [s["cpu_s"][name] / s["requests"] * 1e6 for s in scenarios
                  if name in s.get("cpu_s", {}) and s["requests"]]
        return median(values) if values else None

    return {
        "rounds": len(scenarios), "rps": median(rps), "rps_min": min(rps), "rps_max": max(rps),
        "p50_us": median([s["p50_us"] for s in scenarios]), "p99_us": median([s["p99_us"] for s in scenarios]),
        "err_status": sum(s["err_status"] for s in scenarios),
        "errors_socket": sum(s["errors_socket"] for s in scenarios),
        "gateway_cpu_us": cpu_us("gateway"), "redis_cpu_us": cpu_us("redis"),
        "postgres_cpu_us": cpu_us("postgres"), "other_cpu_us": cpu_us("other"),
    }


def report_governance(args: argparse.Namespace) -> None:
    meta = json.loads(Path(args.meta).read_text())
    results = Path(args.results)
    runs = {name: [json.loads(p.read_text()) for p in sorted(results.glob(f"gov-{name}-[0-9]*.json"))]
            for name, _ in GOV_CONFIGS}
    limiter = {name: json.loads((results / f"limiter-{name}.json").read_text())
               for name in ("rate", "governed") if (results / f"limiter-{name}.json").exists()}
    ledger_path = results / "ledger.json"
    ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else {}
    summary = {name: {key: gov_summary(runs[name], key) for key, *_ in SCENARIOS} for name, _ in GOV_CONFIGS}
    rounds = max((len(v) for v in runs.values()), default=0)

    out: list[str] = [GOVERNANCE_SECTION, ""]
    out.append(f"Measured {meta['date']} by `scripts/bench-gateway.sh` "
               f"({rounds} rounds; in each round the {len(GOV_CONFIGS)} configurations below run one after another, "
               f"each through the same four wrk scenarios of {meta['duration']}, after a warm-up; "
               "figures are the median over rounds, with the range of req/s).")
    out.append("")
    out.append("**Machine.** " + f"{meta['nproc']} CPUs ({meta['cpu_model']}), {meta['mem']} RAM, {meta['kernel']}; "
               "wrk, the gateway, the mock upstream, Redis and PostgreSQL share these cores. " + meta["pinning"])
    out.append("")
    out.append("**Versions.** " + f"landfall `{meta['landfall_rev']}` (release build); {meta['wrk_version']}; "
               f"{meta.get('redis_version', 'Redis ?')}; {meta.get('postgres_version', 'PostgreSQL ?')}; mock upstream "
               f"`landfall-mock-upstream --workers {meta['upstream_workers']}`.")
    out.append("")
    out.append("**Reproduce.** `BENCH_SECTIONS=governance scripts/bench-gateway.sh` (env: "
               "`BENCH_GOV_ROUNDS=3`, `BENCH_DURATION=10s`, `BENCH_WARMUP=3s`, `BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test`, "
               "`BENCH_REDIS_URL=redis://127.0.0.1:6379`; the default `BENCH_SECTIONS=\"gateway governance accounting\"` also "
               "re-measures issues 2 and 4). Requests and wrk settings are issue 2's (above), body "
               f"`{json.dumps(CHAT_BODY, separators=(',', ':'))}`, with `Authorization: Bearer <key>` for the governed "
               "configurations. The Redis limiter figures come from "
               "`cargo run --release -p landfall-kv --example limiter_bench -- --checks rate|governed --tasks 64 --seconds 5`.")
    out.append("")
    out.append("**Configurations** (all run at once, on the same mock upstream, idle while another is measured):")
    out.append("")
    for line in meta.get("governance_configs", []):
        out.append(f"- {line}")
    out.append("")

    out.append("| configuration | scenario | req/s (median, range) | vs bare | p50 | p99 | non-2xx | socket errors | gateway CPU per request |")
    out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, label in GOV_CONFIGS:
        for key, scenario, *_ in SCENARIOS:
            s, bare = summary[name][key], summary["bare"][key]
            if not s:
                continue
            ratio = f"{s['rps'] / bare['rps'] * 100:.1f} %" if bare and bare["rps"] else "n/a"
            cpu = fmt_us(s["gateway_cpu_us"]) if s["gateway_cpu_us"] is not None else "n/a"
            out.append(f"| {label} | {scenario} | {fmt_rps(s['rps'])} ({fmt_rps(s['rps_min'])}–{fmt_rps(s['rps_max'])}) "
                       f"| {ratio} | {fmt_us(s['p50_us'])} | {fmt_us(s['p99_us'])} | {s['err_status']} "
                       f"| {s['errors_socket']} | {cpu} |")
    out.append("")
    out.append("\"Gateway CPU per request\" is landfall's user+system CPU time during the scenario divided by the "
               "requests completed (median over rounds); the difference to bare is what governance costs per "
               "request in landfall itself.")
    out.append("")

    # Where the time goes, at 50 connections non-stream.
    key = "nonstream_c50"
    bare = summary["bare"][key]
    if bare:
        out.append("**CPU per request, non-stream at 50 connections** (median over rounds):")
        out.append("")
        out.append("| configuration | landfall | mock upstream + wrk + rest of the machine | Redis server | PostgreSQL |")
        out.append("| --- | ---: | ---: | ---: | ---: |")
        for name, label in GOV_CONFIGS:
            s = summary[name][key]
            if not s:
                continue
            others = [run["scenarios"][key] for run in runs[name] if key in run["scenarios"]]
            rest = median([(o["cpu_s"].get("upstream", 0) + o["cpu_s"].get("wrk", 0) + o["cpu_s"].get("other", 0))
                           / o["requests"] * 1e6 for o in others if o["requests"]])
            extra = lambda v: fmt_us(v) if v is not None else "–"
            out.append(f"| {label} | {fmt_us(s['gateway_cpu_us'])} | {fmt_us(rest)} | {extra(s['redis_cpu_us'])} "
                       f"| {extra(s['postgres_cpu_us'])} |")
        out.append("")

    if ledger:
        out.append("**Every governed request was accounted.** Usage rows in the ledger after the runs (requests "
                   "summed over the `usage` table for the benchmark tenant) against the responses wrk and the checks "
                   "received (requests cut off when wrk stops are settled as failed and counted too, so the "
                   "ledger can be a little higher):")
        out.append("")
        for name, label in GOV_CONFIGS:
            if name in ledger:
                completed = sum(run.get("warmup", {}).get("requests", 0)
                                + sum(s["requests"] for s in run["scenarios"].values())
                                + 1 + run.get("stream_check", {}).get("requests", 0) for run in runs[name])
                out.append(f"- {label}: ledger {ledger[name]:,} requests; completed responses {completed:,}")
        out.append("")

    if limiter:
        out.append("**Redis limiter alone** (`RedisLimiter` over one multiplexed connection, 64 concurrent tasks, "
                   "one `acquire` + one `release` per admission; Redis on the same 2 cores):")
        out.append("")
        out.append("| checks per admission | admissions/s | p50 | p99 | refused | errors |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, text in (("rate", "1 (requests per second; nothing to release)"),
                           ("governed", "10: tenant and key rps, rpm, tpm, concurrency, daily token budget (the governed gateway above also has the tenant's money budget); the release returns leases and corrects tokens")):
            if name in limiter:
                l = limiter[name]
                out.append(f"| {text} | {l['pairs_per_s']:,.0f} | {fmt_us(l['p50_us'])} | {fmt_us(l['p99_us'])} "
                           f"| {l['refused']} | {l['errors']} |")
        out.append("")

    out.append("**Targets from issue 3:**")
    out.append("")
    out.append("| target | measured | result |")
    out.append("| --- | --- | --- |")
    for name, label in GOV_CONFIGS[1:]:
        parts, verdict = [], None
        for key, scenario, *_ in SCENARIOS:
            s, b = summary[name][key], summary["bare"][key]
            if s and b and b["rps"]:
                drop = (1 - s["rps"] / b["rps"]) * 100
                parts.append(f"{scenario}: " + (f"{drop:.1f} % slower" if drop >= 0 else f"{-drop:.1f} % faster"))
                if key == "nonstream_c50":
                    verdict = drop <= 10
        out.append(f"| throughput drop ≤ 10 % vs bare, {label} (judged at non-stream, 50 conns) | "
                   f"{'; '.join(parts) or 'n/a'} | {passfail(verdict)} |")
    if limiter:
        values = [f"{l['pairs_per_s']:,.0f}/s ({l['checks_per_acquire']} check{'s' if l['checks_per_acquire'] > 1 else ''} each)"
                  for l in limiter.values()]
        low = min(l["pairs_per_s"] for l in limiter.values())
        out.append(f"| Redis-backed limit checks ≥ 5,000/s | {'; '.join(values)} | {passfail(low >= 5000)} |")
    else:
        out.append("| Redis-backed limit checks ≥ 5,000/s | not measured | n/a |")
    out.append("")
    finish_report(out, meta.get("governance_notes"), Path(args.docs))


# ---------------------------------------------------------------- report: accounting (issue 4)

ACC_CONFIGS = [
    ("bare", "bare"),
    ("metrics", "metrics"),
    ("audit", "metrics + audit (SQLite)"),
    ("everything", "everything (SQLite)"),
    ("postgres", "metrics + audit (PostgreSQL)"),
]
# The configurations whose audit log is checked for losses, and the store each writes to.
ACC_AUDITED = {"audit": "sqlite", "everything": "sqlite", "postgres": "postgres"}
AUDIT_WRITER_TARGET = 5000  # records/s


def metric_sum(text: str, name: str, labels: str = "") -> float | None:
    """Sum of the samples of ``name`` (OpenMetrics text) whose labels contain ``labels``;
    None when the metric has no sample at all."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if not line.startswith(name) or line[len(name):len(name) + 1] not in ("{", " "):
            continue
        series, _, value = line.rpartition(" ")
        if labels and labels not in series:
            continue
        total += float(value)
        seen = True
    return total if seen else None


def parse_audit_bench(text: str) -> dict[str, dict]:
    """The figures `audit_bench` prints, per store."""
    stores: dict[str, dict] = {}
    for line in text.splitlines():
        m = re.match(r"(\w+): appended (\d+) records \((\d+) B of JSON each on average\) in batches of (\d+): "
                     r"([\d.]+) s, (\d+) records/s, slowest batch ([\d.]+) ms", line)
        if m:
            stores.setdefault(m[1], {}).update(
                records=int(m[2]), record_bytes=int(m[3]), batch=int(m[4]), append_s=float(m[5]),
                append_per_s=int(m[6]), slowest_batch_ms=float(m[7]))
            continue
        m = re.match(r"(\w+): verified (\d+) records in ([\d.]+) s, (\d+) records/s; intact: (\w+); "
                     r"head seq (\d+); nothing lost: (\w+)", line)
        if m:
            stores.setdefault(m[1], {}).update(
                verified=int(m[2]), verify_s=float(m[3]), verify_per_s=int(m[4]), intact=m[5] == "true",
                head_seq=int(m[6]), lost_nothing=m[7] == "true")
    return stores


def fmt_change(ratio: float) -> str:
    """A ratio to bare as a signed percentage: 0.958 -> −4.2 %."""
    change = (ratio - 1) * 100
    return f"{'−' if change < 0 else '+'}{abs(change):.1f} %"


def load_seconds(run: dict) -> float:
    """How long requests were being sent in one `measure` run: warm-up, the four wrk runs and
    the stream check."""
    warmup = run.get("warmup", {})
    seconds = warmup["requests"] / warmup["rps"] if warmup.get("rps") else 0.0
    seconds += sum(s["duration_us"] / 1e6 for s in run["scenarios"].values())
    return seconds + run.get("stream_check", {}).get("seconds", 0.0)


def responses_received(runs: list[dict]) -> int:
    """Responses the clients received: warm-up, wrk, the sanity request and the stream check."""
    return sum(run.get("warmup", {}).get("requests", 0) + sum(s["requests"] for s in run["scenarios"].values())
               + 1 + run.get("stream_check", {}).get("requests", 0) for run in runs)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def report_accounting(args: argparse.Namespace) -> None:
    meta = json.loads(Path(args.meta).read_text())
    results = Path(args.results)
    runs = {name: [json.loads(p.read_text()) for p in sorted(results.glob(f"acc-{name}-[0-9]*.json"))]
            for name, _ in ACC_CONFIGS}
    summary = {name: {key: gov_summary(runs[name], key) for key, *_ in SCENARIOS} for name, _ in ACC_CONFIGS}
    rounds = max((len(v) for v in runs.values()), default=0)
    labels = dict(ACC_CONFIGS)
    bench_path = results / "audit-bench.txt"
    writer = parse_audit_bench(bench_path.read_text()) if bench_path.exists() else {}

    out: list[str] = [ACCOUNTING_SECTION, ""]
    out.append(f"Measured {meta['date']} by `scripts/bench-gateway.sh` "
               f"({rounds} round{'s' if rounds != 1 else ''}; in each round the {len(ACC_CONFIGS)} configurations below run one after another, "
               f"each through the same four wrk scenarios of {meta['duration']}, after a warm-up; "
               "figures are the median over rounds, with the range of req/s).")
    out.append("")
    out.append("**Machine.** " + f"{meta['nproc']} CPUs ({meta['cpu_model']}), {meta['mem']} RAM, {meta['kernel']}; "
               "wrk, the gateway, the mock upstream and PostgreSQL share these cores. " + meta["pinning"])
    out.append("")
    out.append("**Versions.** " + f"landfall `{meta['landfall_rev']}` (release build); {meta['wrk_version']}; "
               f"{meta.get('postgres_version') or 'PostgreSQL ?'}; mock upstream "
               f"`landfall-mock-upstream --workers {meta['upstream_workers']}`.")
    out.append("")
    out.append("**Reproduce.** `BENCH_SECTIONS=accounting scripts/bench-gateway.sh` (env: "
               "`BENCH_ACC_ROUNDS=3`, `BENCH_DURATION=10s`, `BENCH_WARMUP=3s`, "
               "`BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test`, "
               f"`BENCH_AUDIT_RECORDS={meta.get('audit_bench_records', 100000)}`; the default "
               "`BENCH_SECTIONS=\"gateway governance accounting\"` also re-measures issues 2 and 3). Requests and wrk "
               "settings are issue 2's (above), body "
               f"`{json.dumps(CHAT_BODY, separators=(',', ':'))}`, no key. After the runs each landfall is "
               "scraped (`GET /metrics`), stopped with SIGTERM and waited for; then its audit records are counted "
               "in the store and `landfall audit verify --config CFG --json` checks the chain. The audit writer "
               "figures come from `cargo run --release -p landfall-storage --example audit_bench -- "
               f"--postgres URL --records {meta.get('audit_bench_records', 100000)}`.")
    out.append("")
    out.append("**Configurations** (all run at once, on the same mock upstream, idle while another is measured):")
    out.append("")
    for line in meta.get("accounting_configs", []):
        out.append(f"- {line}")
    out.append("")

    for key, scenario, *_ in SCENARIOS:
        bare = summary["bare"][key]
        if not bare:
            continue
        out.append(f"**{scenario}:**")
        out.append("")
        out.append("| configuration | req/s (median, range) | vs bare | p50 | p99 | non-2xx | socket errors | landfall CPU per request |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, label in ACC_CONFIGS:
            s = summary[name][key]
            if not s:
                continue
            change = "–" if name == "bare" else (fmt_change(s["rps"] / bare["rps"]) if bare["rps"] else "n/a")
            out.append(f"| {label} | {fmt_rps(s['rps'])} ({fmt_rps(s['rps_min'])}–{fmt_rps(s['rps_max'])}) "
                       f"| {change} | {fmt_us(s['p50_us'])} | {fmt_us(s['p99_us'])} | {s['err_status']} "
                       f"| {s['errors_socket']} | {fmt_us(s['gateway_cpu_us'])} |")
        out.append("")
    out.append("\"vs bare\" is the change in median req/s against bare in the same scenario. \"Landfall CPU per "
               "request\" is landfall's user+system CPU time during the scenario divided by the requests completed "
               "(median over rounds); its difference to bare is what accounting costs per request in landfall itself.")
    out.append("")

    key = "nonstream_c50"
    if summary["bare"][key]:
        out.append("**CPU per request, non-stream at 50 connections** (median over rounds), and landfall's peak "
                   "RSS (VmHWM after its last round, i.e. over all its runs):")
        out.append("")
        out.append("| configuration | landfall | mock upstream + wrk + rest of the machine | PostgreSQL | landfall peak RSS |")
        out.append("| --- | ---: | ---: | ---: | ---: |")
        for name, label in ACC_CONFIGS:
            s = summary[name][key]
            if not s:
                continue
            done = [run["scenarios"][key] for run in runs[name] if key in run["scenarios"]]
            rest = median([(o["cpu_s"].get("upstream", 0) + o["cpu_s"].get("wrk", 0) + o["cpu_s"].get("other", 0))
                           / o["requests"] * 1e6 for o in done if o["requests"]])
            pg = fmt_us(s["postgres_cpu_us"]) if s["postgres_cpu_us"] is not None else "–"
            peak_kb = max((run.get("memory", {}).get("hwm_kb", 0) for run in runs[name]), default=0)
            rss = f"{peak_kb / 1024:.1f} MiB" if peak_kb else "n/a"
            out.append(f"| {label} | {fmt_us(s['gateway_cpu_us'])} | {fmt_us(rest)} | {pg} | {rss} |")
        out.append("")

    # Nothing lost: the store against what landfall served.
    lost: dict[str, bool | None] = {}
    gateway_rates: dict[str, tuple[int, float, float, float | None]] = {}
    rows = []
    for name, store in ACC_AUDITED.items():
        if not runs[name]:
            continue
        metrics_path = results / f"acc-{name}.metrics"
        text = metrics_path.read_text() if metrics_path.exists() else ""
        served = metric_sum(text, "landfall_requests_total")
        written = metric_sum(text, "landfall_audit_records_total", 'outcome="written"') or 0
        dropped = metric_sum(text, "landfall_audit_records_total", 'outcome="dropped"') or 0
        failed = metric_sum(text, "landfall_audit_records_total", 'outcome="failed"') or 0
        stop = read_json(results / f"acc-{name}.stop.json")
        stored = read_json(results / f"acc-{name}.store.json")
        verify = read_json(results / f"acc-{name}.verify.json")
        audited = stored.get("audited")
        intact = bool(verify) and not verify.get("problems") and not verify.get("problems_omitted")
        ok = (served is not None and audited is not None and int(served) == audited and dropped == 0
              and intact and stop.get("exit") == "0")
        lost[name] = ok
        seconds = sum(load_seconds(run) for run in runs[name])
        peak = summary[name]["nonstream_c50"]["rps_max"] if summary[name]["nonstream_c50"] else None
        if audited is not None:
            gateway_rates[name] = (audited, seconds, audited / seconds if seconds else 0.0, peak)
        problems = len(verify.get("problems", [])) + verify.get("problems_omitted", 0) if verify else "n/a"
        verify_text = (f"{verify['records']:,} records, {problems} problems"
                       f" ({stored.get('verify_seconds', 0):.1f} s)" if verify else
                       f"no report (exit {stored.get('verify_exit', '?')})")
        stop_text = (f"exit {stop.get('exit')} after {stop.get('seconds', 0):.2f} s" if stop else "n/a")
        rows.append(f"| {labels[name]} | {responses_received(runs[name]):,} "
                    f"| {int(served):,} | {audited:,} | {int(written):,} | {int(dropped)} | {int(failed)} "
                    f"| {stop_text} | {verify_text} | {passfail(ok)} |"
                    if served is not None and audited is not None else
                    f"| {labels[name]} | {responses_received(runs[name]):,} | n/a | {audited} | – | – | – "
                    f"| {stop_text} | {verify_text} | {passfail(False)} |")
    if rows:
        out.append("**Nothing lost.** Per configuration with the audit log on, after all rounds: the responses "
                   "the clients received; the requests landfall served (the sum of `landfall_requests_total`, "
                   "scraped just before the stop; it also counts requests cut off when wrk stops); the "
                   "request records in the store after a graceful stop (`SELECT COUNT(*) FROM audit_records "
                   "WHERE kind = 'request'`); `landfall_audit_records_total` by outcome at the scrape (records "
                   "still queued then are written at the stop); and `landfall audit verify` on the store "
                   "afterwards. PASS when every served request has its record, none was dropped, the chain is "
                   "intact and landfall exited 0 on SIGTERM.")
        out.append("")
        out.append("| configuration | responses received | served | audit records | written | dropped | failed "
                   "| SIGTERM | `audit verify` | result |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |")
        out.extend(rows)
        out.append("")
    if gateway_rates:
        parts = [f"{labels[name]}: {records:,} records in {seconds:,.0f} s of load, {rate:,.0f} records/s on "
                 f"average, up to {fmt_rps(peak)} requests/s (each one record) in the fastest 50-connection "
                 "non-stream run" for name, (records, seconds, rate, peak) in gateway_rates.items()]
        out.append("**Audit writer in the gateway.** Every request is one record, so the writer kept up with the "
                   "request rate wherever nothing was dropped (the queue holds 65,536 records: a writer that fell "
                   "behind would fill it within seconds at these rates, and dropped records are counted). " + "; ".join(parts) + ".")
        out.append("")

    if writer:
        out.append("**Audit writer alone** (`audit_bench`: realistic records of about "
                   f"{next(iter(writer.values())).get('record_bytes', 0)} B of JSON appended in batches through the "
                   "`AuditLog` trait, only the append calls timed; then the whole chain verified; PostgreSQL on "
                   "the same 2 cores):")
        out.append("")
        out.append("| store | records | batch | append records/s | slowest batch | verify records/s | intact, nothing lost | ≥ 5,000 records/s |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
        for store, w in writer.items():
            out.append(f"| {'SQLite' if store == 'sqlite' else 'PostgreSQL' if store == 'postgres' else store} "
                       f"| {w.get('records', 0):,} | {w.get('batch', 0):,} | {w.get('append_per_s', 0):,} "
                       f"| {w.get('slowest_batch_ms', 0):.1f} ms | {w.get('verify_per_s', 0):,} "
                       f"| {'yes' if w.get('intact') and w.get('lost_nothing') else 'no'} "
                       f"| {passfail(w.get('append_per_s', 0) >= AUDIT_WRITER_TARGET)} |")
        out.append("")

    out.append("**Targets from issue 4:**")
    out.append("")
    out.append("| target | measured | result |")
    out.append("| --- | --- | --- |")
    for name in ("audit", "postgres", "metrics", "everything"):
        parts, verdict = [], None
        for key, scenario, *_ in SCENARIOS:
            s, b = summary[name][key], summary["bare"][key]
            if s and b and b["rps"]:
                parts.append(f"{scenario}: {fmt_change(s['rps'] / b['rps'])}")
                if key == "nonstream_c50":
                    verdict = (1 - s["rps"] / b["rps"]) * 100 <= 10
        out.append(f"| throughput cost ≤ 10 % vs bare, {labels[name]} (judged at non-stream, 50 conns) | "
                   f"{'; '.join(parts) or 'n/a'} | {passfail(verdict)} |")
    for store, label, names in (("sqlite", "SQLite", ("audit", "everything")), ("postgres", "PostgreSQL", ("postgres",))):
        w = writer.get(store)
        parts = [f"audit_bench: {w['append_per_s']:,} records/s appended" if w and "append_per_s" in w
                 else "audit_bench: not measured"]
        verdicts = [w.get("append_per_s", 0) >= AUDIT_WRITER_TARGET and w.get("lost_nothing", False)] if w else [False]
        for name in names:
            if name in lost:
                records, _, rate, peak = gateway_rates.get(name, (0, 0.0, 0.0, None))
                parts.append(f"{labels[name]}: {'nothing lost' if lost[name] else 'records missing or chain broken'}"
                             f" at up to {fmt_rps(peak)} req/s")
                verdicts.append(lost[name])
        out.append(f"| audit writer ≥ 5,000 records/s on {label}, nothing lost | {'; '.join(parts)} "
                   f"| {passfail(all(verdicts))} |")
    out.append("")
    finish_report(out, meta.get("accounting_notes"), Path(args.docs))


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--name", required=True)
    m.add_argument("--url", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--pid", type=int, help="gateway process (its whole tree is measured)")
    m.add_argument("--upstream-pid", type=int)
    m.add_argument("--duration", default="10s")
    m.add_argument("--warmup", default="3s")
    m.add_argument("--timeout", default="10s")
    m.add_argument("--wrk-cpus", default=None)
    m.add_argument("--stream-check", type=int, default=0)
    m.add_argument("--stream-check-parallel", type=int, default=4)
    m.add_argument("--stall-ms", type=float, default=25.0,
                   help="a pause longer than this inside a streamed response counts as a stall")
    m.add_argument("--api-key", default=None, help="bearer key for every request")
    m.add_argument("--watch", action="append", metavar="NAME=PID",
                   help="another process (with its children) whose CPU time is reported per scenario")
    m.add_argument("--expect-ratelimit-headers", action="store_true",
                   help="fail unless the sanity request's answer has x-ratelimit-* headers")
    for name in ("report", "report-governance", "report-accounting"):
        r = sub.add_parser(name)
        r.add_argument("--meta", required=True)
        r.add_argument("--results", required=True)
        r.add_argument("--docs", required=True)
    args = parser.parse_args()
    if args.command == "measure":
        url = urllib.parse.urlsplit(args.url)
        if url.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("only loopback targets are allowed")
        measure(args)
    elif args.command == "report":
        report(args)
    elif args.command == "report-governance":
        report_governance(args)
    else:
        report_accounting(args)


if __name__ == "__main__":
    main()
