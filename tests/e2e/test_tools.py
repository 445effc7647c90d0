"""Landfall's built-in tools through the ``openai`` SDK's ``client.responses.create``, each
against a real peer on 127.0.0.1:

- ``http``: a company REST API behind OAuth2 client credentials (a stdlib server here);
- ``ticket``: the fake ServiceNow table API of examples/scripted_model.py, held for approval;
- ``weather``: an Open-Meteo stand-in (geocoding and forecast);
- ``email``: aiosmtpd with STARTTLS and AUTH (crates/tools/tests/peers/smtp.py), with an
  attachment from ``/v1/files``;
- MCP: ``landfall-mcp-peer`` (rmcp) over streamable HTTP and stdio as ``[tools]`` entries, and
  over HTTP as a request's own ``{"type": "mcp"}`` server, its calls approved by the client.

The model is examples/scripted_model.py in its *directives* mode: each ``call NAME {JSON}`` line
of the input becomes one tool call, and the answer lists ``NAME said: OUTPUT``.
"""

from __future__ import annotations

import base64
import email
import email.policy
import io
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import openai
import pytest

from conftest import (
    ADMIN_KEY,
    REQUEST_TIMEOUT_S,
    Landfall,
    StateServer,
    _binary,
    admin,
    create_key,
    httpx,
    in_thread,
    peer,
    serve,
)

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID, CLIENT_SECRET = "landfall", "erp-client-secret"


@dataclass
class Company:
    """What the company's services saw."""

    base_url: str = ""
    tokens_issued: int = 0
    order_requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _CompanyHandler(BaseHTTPRequestHandler):
    """An ERP API (OAuth2 client credentials) and an Open-Meteo stand-in."""

    protocol_version = "HTTP/1.1"
    server: "StateServer"

    def _json(self, status: int, body: object) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        if self.path != "/oauth/token":
            self._json(404, {"error": "not_found"})
            return
        form = {name: values[0] for name, values in parse_qs(body).items()}
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        credentials_ok = self.headers.get("Authorization") == f"Basic {basic}" or (
            form.get("client_id") == CLIENT_ID and form.get("client_secret") == CLIENT_SECRET
        )
        if form.get("grant_type") != "client_credentials" or not credentials_ok:
            self._json(401, {"error": "invalid_client"})
            return
        with self.server.state.lock:
            self.server.state.tokens_issued += 1
            token = f"token-{self.server.state.tokens_issued}"
        self._json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        query = {name: values[0] for name, values in parse_qs(url.query).items()}
        state = self.server.state
        if url.path.startswith("/api/orders/"):
            with state.lock:
                expected = f"Bearer token-{state.tokens_issued}"
                state.order_requests.append(self.headers.get("Authorization", ""))
            if self.headers.get("Authorization") != expected:
                self._json(401, {"error": "invalid_token"})
                return
            order = unquote(url.path.removeprefix("/api/orders/"))
            self._json(200, {"order_id": order, "status": "shipped", "eta": "2026-12-10"})
        elif url.path == "/v1/search":
            found = query.get("name") == "Hangzhou"
            place = {"name": "Hangzhou", "admin1": "Zhejiang", "country": "China",
                     "latitude": 30.29, "longitude": 120.16}
            self._json(200, {"results": [place]} if found else {})
        elif url.path == "/v1/forecast":
            days = int(query.get("forecast_days", "3"))
            self._json(200, {
                "current_units": {"temperature_2m": "°C", "wind_speed_10m": "km/h"},
                "current": {"temperature_2m": 14.2, "relative_humidity_2m": 71,
                            "weather_code": 3, "wind_speed_10m": 9.4},
                "daily_units": {"temperature_2m_max": "°C", "precipitation_sum": "mm"},
                "daily": {
                    "time": [f"2026-12-{7 + day:02d}" for day in range(days)],
                    "weather_code": [61] * days,
                    "temperature_2m_max": [16.0 + day for day in range(days)],
                    "temperature_2m_min": [9.0] * days,
                    "precipitation_sum": [4.5] * days,
                    "precipitation_probability_max": [80] * days,
                },
            })
        else:
            self._json(404, {"error": "not_found"})

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def company() -> Iterator[Company]:
    state = Company()
    with in_thread(_CompanyHandler, state) as url:
        state.base_url = url
        yield state


@dataclass
class Peers:
    model: str  # the scripted model's root URL (it also plays ServiceNow)
    smtp_dir: Path
    smtp_port: int
    mcp_url: str


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    directory = tmp_path_factory.mktemp("tool-peers")
    smtp_dir = directory / "smtp"
    smtp_dir.mkdir()
    model_argv = [sys.executable, str(ROOT / "examples/scripted_model.py")]
    smtp_argv = [sys.executable, str(ROOT / "crates/tools/tests/peers/smtp.py"), str(smtp_dir)]
    mcp_argv = [str(_binary("MCP_PEER_BIN")), "http"]
    with (
        peer(model_argv, directory / "model.log", "listening on ", stdin=subprocess.DEVNULL) as model,
        peer(smtp_argv, directory / "smtp.log", "ready ", stdin=subprocess.PIPE) as smtp_ports,
        peer(mcp_argv, directory / "mcp.log", "ready ", stdin=subprocess.DEVNULL) as mcp_port,
    ):
        yield Peers(
            model=f"http://{model}",
            smtp_dir=smtp_dir,
            smtp_port=int(smtp_ports.split()[0]),
            mcp_url=f"http://127.0.0.1:{mcp_port}/mcp",
        )


def _config(peers: Peers, company: Company) -> str:
    mcp_peer = _binary("MCP_PEER_BIN")
    return f"""\
[auth]
admin_key = "{ADMIN_KEY}"

[shedding]
enabled = false

[agents]
deadline_ms = 20000
tool_timeout_ms = 10000
mcp_allow_private = ["127.0.0.1"]

[providers.scripted]
type = "openai"
base_url = "{peers.model}/v1"

[models.agent]
targets = [{{ provider = "scripted", model = "directives" }}]

[tools.erp_orders]
type = "http"
method = "GET"
url = "{company.base_url}/api/orders/{{order_id}}"
description = "Looks up an order by its number."
parameters = {{ type = "object", properties = {{ order_id = {{ type = "string" }} }}, required = ["order_id"] }}
auth = {{ type = "oauth2_client_credentials", token_url = "{company.base_url}/oauth/token", client_id = "{CLIENT_ID}", client_secret = "{CLIENT_SECRET}" }}
allow_private = ["127.0.0.1"]

[tools.incident]
type = "ticket"
url = "{peers.model}/api/now/table/incident"
auth = {{ type = "basic", username = "landfall", password = "servicenow-secret" }}
body = {{ short_description = "{{{{ short_description }}}}", description = "{{{{ description }}}}", urgency = "{{{{ urgency }}}}" }}
id_pointer = "/result/sys_id"
number_pointer = "/result/number"
link = "https://example.service-now.com/nav_to.do?uri=incident.do?sys_id={{id}}"
allow_private = ["127.0.0.1"]

[tools.weather]
type = "weather"
base_url = "{company.base_url}"
geocoding_url = "{company.base_url}"
allow_private = ["127.0.0.1"]

[tools.mail]
type = "email"
host = "127.0.0.1"
port = {peers.smtp_port}
security = "starttls"
ca_file = "{peers.smtp_dir / 'ca.pem'}"
username = "agent"
password = "s3cret"
from = "Assistant <assistant@example.com>"
allowed_domains = ["example.com"]
require_approval = false

[tools.erp]
type = "mcp"
url = "{peers.mcp_url}"
allowed_tools = ["lookup_order"]
allow_private = ["127.0.0.1"]

[tools.erp_stdio]
type = "mcp"
command = ["{mcp_peer}", "stdio"]
allowed_tools = ["whoami"]
env = {{ PEER_SECRET = "stdio-secret" }}
"""


@pytest.fixture(scope="module")
def tools_landfall(
    tmp_path_factory: pytest.TempPathFactory, peers: Peers, company: Company
) -> Iterator[Landfall]:
    with serve(tmp_path_factory.mktemp("landfall-tools"), _config(peers, company)) as server:
        yield server


@pytest.fixture(scope="module")
def agent(tools_landfall: Landfall) -> Iterator[openai.OpenAI]:
    secret = create_key(tools_landfall, {"id": "tools-e2e"}, {})
    with openai.OpenAI(
        base_url=tools_landfall.base_url, api_key=secret, max_retries=0, timeout=REQUEST_TIMEOUT_S
    ) as client:
        yield client


def _calls(response) -> list:
    return [item for item in response.output if item.type == "mcp_call"]


def _run(agent: openai.OpenAI, tool: dict, *directives: str, **options):
    """One response whose scripted model makes the DIRECTIVES (``NAME {JSON}``) in order."""
    text = "\n".join(f"call {directive}" for directive in directives)
    return agent.responses.create(model="agent", input=text, tools=[tool], **options)


def test_http_tool_with_oauth2_client_credentials(agent: openai.OpenAI, company: Company) -> None:
    tool = {"type": "landfall", "name": "erp_orders"}
    first = _run(agent, tool, 'erp_orders {"order_id": "A-17"}', 'erp_orders {"order_id": "B 9"}')
    calls = _calls(first)
    assert [call.name for call in calls] == ["erp_orders", "erp_orders"], first.output
    assert all(call.error is None for call in calls), calls
    assert '"order_id":"A-17"' in calls[0].output.replace(" ", "") and "shipped" in calls[0].output
    assert '"B 9"' in calls[1].output  # the argument was URL-encoded into the path and back
    assert first.output_text.startswith("erp_orders said: ")
    # One token for both calls: it is cached until it expires.
    assert company.tokens_issued == 1
    assert company.order_requests == ["Bearer token-1", "Bearer token-1"]

    bad = _run(agent, tool, 'erp_orders {"order": 5}')
    assert _calls(bad)[0].error and "order_id" in _calls(bad)[0].error


def test_ticket_tool_waits_for_approval(
    agent: openai.OpenAI, tools_landfall: Landfall, peers: Peers
) -> None:
    decided: list[dict] = []

    def reviewer(verdicts: list[str]) -> None:
        deadline = time.monotonic() + 15
        while verdicts and time.monotonic() < deadline:
            pending = admin(tools_landfall, "GET", "/approvals?status=pending").json()["data"]
            for approval in pending:
                verdict = verdicts.pop(0)
                body = {"reason": "not an incident"} if verdict == "reject" else None
                answer = admin(tools_landfall, "POST", f"/approvals/{approval['id']}/{verdict}", body)
                decided.append(answer.json())
            time.sleep(0.05)

    thread = threading.Thread(target=reviewer, args=(["approve", "reject"],), daemon=True)
    thread.start()
    args = {"short_description": "Pump E24", "description": "Drain pump faulty", "urgency": "2"}
    approved = _run(agent, {"type": "landfall", "name": "incident"}, f"incident {json.dumps(args)}")
    rejected = _run(agent, {"type": "landfall", "name": "incident"}, f"incident {json.dumps(args)}")
    thread.join(timeout=20)
    assert [approval["status"] for approval in decided] == ["approved", "rejected"], decided
    assert decided[0]["arguments"] == args

    call = _calls(approved)[0]
    assert call.error is None and call.output.startswith("Ticket INC"), call
    assert "nav_to.do?uri=incident.do?sys_id=" in call.output
    assert "not an incident" in (_calls(rejected)[0].error or ""), _calls(rejected)
    incidents = httpx.get(
        f"{peers.model}/api/now/table/incident",
        auth=("landfall", "servicenow-secret"),
        timeout=10,
        trust_env=False,
    ).json()["result"]
    assert len(incidents) == 1 and incidents[0]["short_description"] == "Pump E24", incidents
    assert incidents[0]["number"] in call.output


def test_weather_tool_by_place_name_streamed(agent: openai.OpenAI) -> None:
    events = list(
        _run(agent, {"type": "landfall", "name": "weather"}, 'weather {"location": "Hangzhou", "days": 2}', stream=True)
    )
    assert events[-1].type == "response.completed", [event.type for event in events]
    calls = _calls(events[-1].response)
    assert len(calls) == 1 and calls[0].error is None, calls
    output = calls[0].output
    assert output.startswith("Weather for Hangzhou, Zhejiang, China"), output
    assert "Now: 14.2°C" in output and "2026-12-08" in output and "2026-12-09" not in output
    added = [event for event in events if event.type == "response.output_item.added"]
    assert [event.item.type for event in added] == ["mcp_call", "message"], added

    missing = _run(agent, {"type": "landfall", "name": "weather"}, 'weather {"location": "Atlantis"}')
    assert "no place called `Atlantis`" in (_calls(missing)[0].error or "")


def test_email_tool_delivers_mime_with_an_attachment(agent: openai.OpenAI, peers: Peers) -> None:
    report = agent.files.create(file=("q1.csv", io.BytesIO(b"region,revenue\nNorth,3600\n")), purpose="assistants")
    args = {
        "to": ["ops@example.com"],
        "subject": "Q1 revenue",
        "body": "The Q1 figures are attached.",
        "attachments": [report.id],
    }
    sent = _run(agent, {"type": "landfall", "name": "mail"}, f"mail {json.dumps(args)}")
    call = _calls(sent)[0]
    assert call.error is None, call
    messages = sorted(peers.smtp_dir.glob("*.eml"))
    assert len(messages) == 1, messages
    envelope = json.loads(messages[0].with_suffix(".json").read_text())
    assert envelope["to"] == ["ops@example.com"]
    message = email.message_from_bytes(messages[0].read_bytes(), policy=email.policy.default)
    assert message["Subject"] == "Q1 revenue" and "assistant@example.com" in message["From"]
    assert "The Q1 figures are attached." in message.get_body(("plain",)).get_content()
    attachments = list(message.iter_attachments())
    assert [part.get_filename() for part in attachments] == ["q1.csv"]
    payload = attachments[0].get_payload(decode=True).replace(b"\r\n", b"\n")
    assert payload == b"region,revenue\nNorth,3600\n"

    outside = {**args, "to": ["someone@elsewhere.org"], "attachments": []}
    refused = _run(agent, {"type": "landfall", "name": "mail"}, f"mail {json.dumps(outside)}")
    assert "elsewhere.org" in (_calls(refused)[0].error or ""), _calls(refused)
    assert len(list(peers.smtp_dir.glob("*.eml"))) == 1


def test_mcp_servers_over_http_stdio_and_per_request(agent: openai.OpenAI, peers: Peers) -> None:
    over_http = _run(agent, {"type": "landfall", "name": "erp"}, 'lookup_order {"order_id": "42"}')
    assert _calls(over_http)[0].output == "Order 42 shipped on 2026-11-30.", over_http.output
    assert over_http.output_text == "lookup_order said: Order 42 shipped on 2026-11-30."

    over_stdio = _run(agent, {"type": "landfall", "name": "erp_stdio"}, "whoami {}")
    # The child got its configured env and not landfall's (HOME is not passed on).
    assert _calls(over_stdio)[0].output == "credential=stdio-secret home_inherited=false"

    server = {
        "type": "mcp",
        "server_label": "warehouse",
        "server_url": peers.mcp_url,
        "allowed_tools": ["lookup_order"],
        "headers": {"Authorization": "Bearer per-request"},
        "require_approval": "never",
    }
    own = _run(agent, server, 'lookup_order {"order_id": "7"}')
    call = _calls(own)[0]
    assert call.server_label == "warehouse" and call.output == "Order 7 shipped on 2026-11-30."
    # Without `require_approval` (OpenAI's default) the client approves each call.
    asking = {key: value for key, value in server.items() if key != "require_approval"}
    asked = _run(agent, asking, 'lookup_order {"order_id": "8"}')
    requests = [item for item in asked.output if item.type == "mcp_approval_request"]
    assert len(requests) == 1 and not _calls(asked), asked.output
    assert requests[0].name == "lookup_order" and requests[0].server_label == "warehouse"
    approved = agent.responses.create(
        model="agent",
        previous_response_id=asked.id,
        tools=[asking],
        input=[{"type": "mcp_approval_response", "approval_request_id": requests[0].id, "approve": True}],
    )
    call = _calls(approved)[0]
    assert call.approval_request_id == requests[0].id
    assert call.output == "Order 8 shipped on 2026-11-30."

    # A tool the request did not allow is not offered, so the model's call to it fails.
    hidden = _run(agent, server, "admin_reset {}")
    assert "no tool named `admin_reset`" in hidden.output_text, hidden.output
    assert "everything reset" not in json.dumps(hidden.model_dump())
