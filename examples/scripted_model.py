"""A scripted, OpenAI-compatible model for Landfall's examples and end-to-end tests.

It answers ``POST /v1/chat/completions`` (plain JSON or SSE when ``stream`` is true) and
decides its tool calls deterministically from the conversation, so an agent run through
Landfall's ``/v1/responses`` loop goes the same way every time. The upstream model name picks
the behaviour:

- ``customer-service``: searches the manual (``file_search``) with the customer's words, opens
  a ticket (``open_ticket``) quoting the passage that matched best, then answers with the
  passage, its ``[n]`` citation and the ticket number.
- ``report-assistant``: reads the schema (``sales_db_schema``), runs one revenue query
  (``sales_db``), looks the metric up in the glossary (``file_search``), then answers with the
  definition, a summary and a Vega-Lite bar chart of the rows in a fenced ``json`` block.
- anything else, *directives*: each line ``call NAME {JSON}`` of the last user message is one
  tool call, made one per turn in order; then the answer lists every result as
  ``NAME said: OUTPUT``. Without directives it answers ``scripted: <user text>``.

It also plays the company's ticket system: ``POST /api/now/table/incident`` creates an incident
the way ServiceNow's table API does (``{"result": {"sys_id", "number", …}}``; HTTP Basic
``landfall`` / ``servicenow-secret``) and ``GET /api/now/table/incident`` lists them.

Usage: ``python scripted_model.py [--listen 127.0.0.1:0]``; prints ``listening on HOST:PORT``
once it accepts connections and serves until killed. Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

TICKET_USER = "landfall"
TICKET_PASSWORD = "servicenow-secret"
MAX_BODY_BYTES = 4 * 1024 * 1024
WORD = re.compile(r"[a-z0-9]+")


# --- Reading the conversation -----------------------------------------------------------------


def text_of(content: object) -> str:
    """The text of a chat message's content (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


class Conversation:
    """The request's messages since the last user message, with the tool results in order."""

    def __init__(self, request: dict) -> None:
        messages = request.get("messages") or []
        last_user = max(
            (index for index, message in enumerate(messages) if message.get("role") == "user"),
            default=-1,
        )
        self.user_text = text_of(messages[last_user].get("content")) if last_user >= 0 else ""
        self.offered = [
            tool["function"]["name"]
            for tool in request.get("tools") or []
            if tool.get("type") == "function"
        ]
        names: dict[str, str] = {}
        self.results: list[tuple[str, str]] = []
        for message in messages[last_user + 1 :]:
            for call in message.get("tool_calls") or []:
                names[call.get("id", "")] = call["function"]["name"]
            if message.get("role") == "tool":
                name = names.get(message.get("tool_call_id", ""), "?")
                self.results.append((name, text_of(message.get("content"))))

    def result(self, name: str) -> str | None:
        """The latest output of tool ``name`` in this turn, if it was called."""
        found = [output for tool, output in self.results if tool == name]
        return found[-1] if found else None


def call(name: str, arguments: dict) -> dict:
    return {"tool_call": (name, arguments)}


def say(text: str) -> dict:
    return {"text": text}


# --- Behaviours -------------------------------------------------------------------------------


def directives(conversation: Conversation) -> dict:
    planned = []
    for line in conversation.user_text.splitlines():
        match = re.match(r"\s*call\s+([A-Za-z0-9_-]+)\s*(\{.*\})?\s*$", line)
        if match:
            try:
                planned.append((match.group(1), json.loads(match.group(2) or "{}")))
            except json.JSONDecodeError as error:
                return say(f"scripted: the arguments of `{line.strip()}` are not JSON: {error}")
    done = len(conversation.results)
    if conversation.offered and done < len(planned):
        return call(*planned[done])
    if conversation.results:
        return say("\n".join(f"{name} said: {output}" for name, output in conversation.results))
    return say(f"scripted: {conversation.user_text}")


def sources(search_output: str) -> list[tuple[int, str]]:
    """``[(n, passage)]`` from the file_search tool's numbered sources."""
    found = []
    for match in re.finditer(r"^\[(\d+)\] [^\n]*:\n(.*?)(?=^\[\d+\] |\Z)", search_output, re.M | re.S):
        found.append((int(match.group(1)), match.group(2).strip()))
    return found


def sentences(passage: str) -> Iterator[str]:
    """The sentences of a passage; blocks end at blank lines, headings and list items, and the
    lines inside one are rejoined."""
    for block in re.split(r"\n\s*\n|\n(?=\s*[-*#])", passage):
        for sentence in re.split(r"(?<=[.!?])\s+", " ".join(block.split())):
            sentence = sentence.lstrip("#-* ").strip()
            if sentence:
                yield sentence


def best_sentence(question: str, passages: list[tuple[int, str]]) -> tuple[int, str] | None:
    """The sentence of the passages sharing most words with the question, with its source."""
    wanted = set(WORD.findall(question.lower()))
    best, best_score = None, 0
    for number, passage in passages:
        for sentence in sentences(passage):
            score = len(wanted & set(WORD.findall(sentence.lower())))
            if score > best_score:
                best, best_score = (number, sentence), score
    return best


def defining_sentence(term: str, passages: list[tuple[int, str]]) -> tuple[int, str] | None:
    """The first sentence of the passages that starts ``TERM is``, with its source."""
    for number, passage in passages:
        for sentence in sentences(passage):
            if sentence.lower().startswith(f"{term.lower()} is "):
                return number, sentence
    return None


def customer_service(conversation: Conversation) -> dict:
    question = conversation.user_text
    search = conversation.result("file_search")
    if search is None:
        return call("file_search", {"query": question})
    passage = best_sentence(question, sources(search))
    ticket = conversation.result("open_ticket")
    if ticket is None and "open_ticket" in conversation.offered:
        summary = question.split(".")[0].strip()
        if len(summary) > 80:
            summary = summary[:77].rsplit(" ", 1)[0].rstrip(",;") + "…"
        quoted = passage[1] if passage else "nothing in the manual matched"
        return call(
            "open_ticket",
            {
                "short_description": summary,
                "description": f"Customer: {question}\n\nManual: {quoted}",
                "urgency": "2",
            },
        )
    answer = (
        f"The manual says: {passage[1]} [{passage[0]}]"
        if passage
        else "I found nothing about this in the manual."
    )
    if ticket is not None:
        answer += f"\n\nI have passed this on to our service team. {ticket}"
    return say(answer)


REVENUE_QUERY = (
    "SELECT region, month, SUM(revenue) AS revenue FROM sales "
    "WHERE month BETWEEN '2026-01' AND '2026-03' GROUP BY region, month ORDER BY month, region"
)


def markdown_rows(table: str) -> list[dict]:
    """The rows of the sql tool's markdown table, numbers as numbers."""
    lines = [line for line in table.splitlines() if line.startswith("|")]
    if len(lines) < 2:
        return []

    def split(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip().strip("|").split("|")]

    columns = split(lines[0])
    rows = []
    for line in lines[2:]:
        cells = []
        for cell in split(line):
            try:
                cells.append(float(cell) if "." in cell else int(cell))
            except ValueError:
                cells.append(cell)
        rows.append(dict(zip(columns, cells)))
    return rows


def report_assistant(conversation: Conversation) -> dict:
    schema = conversation.result("sales_db_schema")
    if schema is None:
        return call("sales_db_schema", {})
    table = conversation.result("sales_db")
    if table is None:
        if "sales" not in schema or "revenue" not in schema:
            return say(f"The database has no sales revenue I can chart:\n{schema}")
        return call("sales_db", {"query": REVENUE_QUERY})
    glossary = conversation.result("file_search")
    if glossary is None:
        return call("file_search", {"query": "revenue definition"})
    rows = markdown_rows(table)
    if not rows:
        return say(f"The query returned nothing to chart: {table}")
    definition = defining_sentence("revenue", sources(glossary))
    totals: dict[str, float] = {}
    for row in rows:
        totals[row["region"]] = totals.get(row["region"], 0) + row["revenue"]
    leader = max(totals, key=totals.get)
    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "Revenue by region, 2026 Q1",
        "data": {"values": rows},
        "mark": "bar",
        "encoding": {
            "x": {"field": "month", "type": "ordinal", "title": "Month", "axis": {"labelAngle": 0}},
            "xOffset": {"field": "region"},
            "y": {"field": "revenue", "type": "quantitative", "title": "Revenue (USD)"},
            "color": {"field": "region", "type": "nominal", "title": "Region"},
        },
    }
    meaning = f"{definition[1]} [{definition[0]}]" if definition else "(no definition found)"
    return say(
        f"Revenue: {meaning}\n\n"
        f"Q1 2026 revenue was {sum(totals.values()):.2f} USD in all; {leader} led with "
        f"{totals[leader]:.2f} USD.\n\n```json\n{json.dumps(spec, indent=2)}\n```"
    )


BEHAVIOURS = {"customer-service": customer_service, "report-assistant": report_assistant}


# --- The OpenAI wire format -------------------------------------------------------------------


def completion(request: dict) -> tuple[dict, dict]:
    """The assistant message and finish reason this model gives the request."""
    conversation = Conversation(request)
    decided = BEHAVIOURS.get(request.get("model"), directives)(conversation)
    if "tool_call" in decided:
        name, arguments = decided["tool_call"]
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{uuid.uuid4().hex[:12]}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments)},
                }
            ],
        }
        return message, "tool_calls"
    return {"role": "assistant", "content": decided["text"]}, "stop"


def usage(request: dict, message: dict) -> dict:
    prompt = sum(len(json.dumps(m)) for m in request.get("messages") or []) // 4 + 1
    output = len(json.dumps(message)) // 4 + 1
    return {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "Server"

    def send_json(self, status: int, body: object) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def error(self, status: int, message: str) -> None:
        self.send_json(status, {"error": {"message": message, "type": "invalid_request_error"}})

    def body(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.error(413, "request body too large")
            return None
        try:
            value = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as error:
            self.error(400, f"the body is not JSON: {error}")
            return None
        if not isinstance(value, dict):
            self.error(400, "the body must be a JSON object")
            return None
        return value

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
        path = self.path.split("?")[0].rstrip("/")
        if path == "/v1/models":
            names = ["customer-service", "report-assistant", "directives"]
            self.send_json(200, {"object": "list", "data": [{"id": n, "object": "model"} for n in names]})
        elif path == "/api/now/table/incident" and self.ticket_auth():
            with self.server.lock:
                self.send_json(200, {"result": list(self.server.incidents)})
        elif path != "/api/now/table/incident":
            self.error(404, f"no route {path}")

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?")[0].rstrip("/")
        if path == "/v1/chat/completions":
            request = self.body()
            if request is not None:
                self.chat(request)
        elif path == "/api/now/table/incident":
            if self.ticket_auth():
                fields = self.body()
                if fields is not None:
                    self.send_json(201, {"result": self.server.open_incident(fields)})
        else:
            self.error(404, f"no route {path}")

    def ticket_auth(self) -> bool:
        expected = base64.b64encode(f"{TICKET_USER}:{TICKET_PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") == f"Basic {expected}":
            return True
        self.send_json(401, {"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": "failure"})
        return False

    def chat(self, request: dict) -> None:
        try:
            message, finish = completion(request)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            self.send_json(500, {"error": {"message": f"the scripted model failed: {error!r}", "type": "server_error"}})
            return
        created = int(time.time())
        identifier = f"chatcmpl-{uuid.uuid4().hex[:16]}"
        model = request.get("model", "scripted")
        if not request.get("stream"):
            self.send_json(
                200,
                {
                    "id": identifier,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage(request, message),
                },
            )
            return

        def chunk(delta: dict, reason: str | None = None) -> dict:
            return {
                "id": identifier,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": reason}],
            }

        events = [chunk({"role": "assistant", "content": ""})]
        if message.get("tool_calls"):
            events.append(chunk({"tool_calls": [{"index": 0, **message["tool_calls"][0]}]}))
        else:
            words = re.findall(r"\S+\s*|\s+", message["content"])
            events.extend(chunk({"content": word}) for word in words)
        events.append(chunk({}, finish))
        if (request.get("stream_options") or {}).get("include_usage"):
            events.append({**chunk({}), "choices": [], "usage": usage(request, message)})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for event in events:
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, Handler)
        self.lock = threading.Lock()
        self.incidents: list[dict] = []

    def open_incident(self, fields: dict) -> dict:
        with self.lock:
            number = f"INC{10001 + len(self.incidents):07d}"
            incident = {**fields, "sys_id": uuid.uuid4().hex, "number": number, "state": "1"}
            self.incidents.append(incident)
            return incident


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: a free one)")
    arguments = parser.parse_args()
    host, _, port = arguments.listen.rpartition(":")
    server = Server((host or "127.0.0.1", int(port)))
    bound_host, bound_port = server.server_address[:2]
    print(f"listening on {bound_host}:{bound_port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
