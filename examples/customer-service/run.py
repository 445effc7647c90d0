"""The customer-service example, end to end.

A customer reports a fault. The assistant (a scripted model behind Landfall) searches the
product manual, opens a ServiceNow incident — which waits until a person approves it through
the admin API — and answers with a citation of the manual and the ticket number. A follow-up
question continues the conversation with ``previous_response_id``.

Usage: python examples/customer-service/run.py --landfall target/debug/landfall [--out DIR]
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import support  # noqa: E402
from support import expect  # noqa: E402

HERE = Path(__file__).resolve().parent
TICKET_PASSWORD = "servicenow-secret"  # what the scripted model's fake ServiceNow accepts
QUESTION = (
    "My X200 dishwasher shows error E24 and the water does not drain, even after I cleaned "
    "the filter. Please send a technician."
)
INSTRUCTIONS = (
    "You are AquaClean's support assistant. Answer from the manual and cite it. If the "
    "customer needs a technician, open a ticket."
)


class Reviewer(threading.Thread):
    """A person at the admin API: approves the first ticket call that waits for them."""

    def __init__(self, server: support.Landfall) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.approved: dict | None = None
        self.error: str | None = None

    def run(self) -> None:
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                pending = self.server.admin("GET", "/approvals?status=pending")["data"]
                if pending:
                    call = pending[0]
                    print(f"reviewer: {call['tool']} wants to run with {call['arguments']}")
                    self.approved = self.server.admin("POST", f"/approvals/{call['id']}/approve")
                    print(f"reviewer: approved {call['id']}")
                    return
                time.sleep(0.1)
            self.error = "no tool call waited for approval within 30 s"
        except (support.ExampleFailed, support.httpx.HTTPError) as failure:
            self.error = str(failure)


def run(binary: str, work: Path) -> None:
    with support.scripted_model() as model:
        overrides = {
            "LANDFALL__PROVIDERS__SCRIPTED__BASE_URL": f"{model}/v1",
            "LANDFALL__TOOLS__OPEN_TICKET__URL": f"{model}/api/now/table/incident",
            "SERVICENOW_PASSWORD": TICKET_PASSWORD,
        }
        with support.landfall(binary, HERE / "landfall.toml", work, overrides) as server:
            client = server.client("aquaclean-support", tools=["open_ticket"])
            manual = HERE / "manual.md"
            store = support.knowledge_base(client, "AquaClean manuals", [manual])
            reviewer = Reviewer(server)
            reviewer.start()

            print(f"customer: {QUESTION}")
            response = client.responses.create(
                model="assistant",
                instructions=INSTRUCTIONS,
                input=QUESTION,
                tools=[
                    {"type": "file_search", "vector_store_ids": [store]},
                    {"type": "landfall", "name": "open_ticket"},
                ],
                include=["file_search_call.results"],
                store=True,
            )
            reviewer.join(timeout=35)
            expect(reviewer.error is None, f"reviewer: {reviewer.error}")
            expect(response.status == "completed", f"the response is {response.status}")
            kinds = [item.type for item in response.output]
            expect(
                kinds == ["file_search_call", "mcp_call", "message"],
                f"expected a search, a ticket and an answer, got {kinds}",
            )
            search, ticket, message = response.output
            expect(search.results and search.results[0].filename == "manual.md", "no manual hit")
            expect(ticket.name == "open_ticket" and ticket.error is None, f"ticket call: {ticket}")
            expect("INC0010001" in (ticket.output or ""), f"ticket output: {ticket.output}")
            answer = response.output_text
            expect("drain pump is faulty" in answer, f"the answer does not quote the manual: {answer}")
            expect("INC0010001" in answer, f"the answer has no ticket number: {answer}")
            citations = message.content[0].annotations
            expect(
                citations and all(note.type == "file_citation" for note in citations),
                f"the answer has no file citation: {citations}",
            )
            incidents = support.httpx.get(
                f"{model}/api/now/table/incident",
                auth=("landfall", TICKET_PASSWORD),
                timeout=10,
                trust_env=False,
            ).json()["result"]
            expect(len(incidents) == 1, f"ServiceNow has {len(incidents)} incidents")
            incident = incidents[0]
            expect(incident["category"] == "dishwasher", f"incident fields: {incident}")
            expect("drain pump" in incident["description"], f"incident: {incident}")
            print(f"assistant: {answer}")
            print(f"           (cites {citations[0].filename}; ticket {incident['number']})")

            follow_up = "How long is the warranty on the motor?"
            print(f"customer: {follow_up}")
            second = client.responses.create(
                model="assistant",
                previous_response_id=response.id,
                input=follow_up,
                tools=[{"type": "file_search", "vector_store_ids": [store]}],
            )
            expect("10 years on the motor" in second.output_text, f"answer: {second.output_text}")
            print(f"assistant: {second.output_text}")
            approvals = server.admin("GET", "/approvals?status=approved")["data"]
            expect(len(approvals) == 1, f"approved calls: {approvals}")
    print("customer-service example: OK")


if __name__ == "__main__":
    support.main(run)
