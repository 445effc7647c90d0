"""The report-assistant example, end to end.

An analyst asks for a chart. The assistant (a scripted model behind Landfall) reads the sales
database's schema, runs one read-only query through the `sql` tool, looks the metric up in the
glossary (`file_search`) and answers with its definition, a summary and a Vega-Lite bar chart.
The script checks the chart's data against the database and renders it to PNG with
`vl-convert-python`.

Usage: python examples/report-assistant/run.py --landfall target/debug/landfall [--out DIR]
(DIR keeps sales.db, revenue-2026-q1.vl.json and revenue-2026-q1.png).
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from pathlib import Path

import vl_convert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import support  # noqa: E402
from support import expect  # noqa: E402

HERE = Path(__file__).resolve().parent
QUESTION = "Chart our monthly revenue by region for the first quarter of 2026."
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sales_database(path: Path) -> list[dict]:
    """A small sales table from December 2025 to April 2026; returns Q1 2026 revenue rows."""
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE sales (id INTEGER PRIMARY KEY, region TEXT NOT NULL, "
            "month TEXT NOT NULL, product TEXT NOT NULL, revenue REAL NOT NULL)"
        )
        rows = []
        for m, month in enumerate(["2025-12", "2026-01", "2026-02", "2026-03", "2026-04"]):
            for r, region in enumerate(["North", "South", "West"]):
                for p, product in enumerate(["X200", "X300"]):
                    revenue = 1000 + 250 * r + 120 * m + 80 * p + (37 * (m + r + p)) % 90
                    rows.append((region, month, product, float(revenue)))
        connection.executemany(
            "INSERT INTO sales (region, month, product, revenue) VALUES (?, ?, ?, ?)", rows
        )
        connection.row_factory = sqlite3.Row
        expected = connection.execute(
            "SELECT region, month, SUM(revenue) AS revenue FROM sales "
            "WHERE month BETWEEN '2026-01' AND '2026-03' GROUP BY region, month "
            "ORDER BY month, region"
        ).fetchall()
    return [dict(row) for row in expected]


def run(binary: str, work: Path) -> None:
    expected = sales_database(work / "sales.db")
    with support.scripted_model() as model:
        overrides = {
            "LANDFALL__PROVIDERS__SCRIPTED__BASE_URL": f"{model}/v1",
            "LANDFALL__TOOLS__SALES_DB__URL": f"sqlite://{work / 'sales.db'}",
        }
        with support.landfall(binary, HERE / "landfall.toml", work, overrides) as server:
            client = server.client("finance-reports", tools=["sales_db"])
            store = support.knowledge_base(client, "Metrics glossary", [HERE / "glossary.md"])

            print(f"analyst: {QUESTION}")
            response = client.responses.create(
                model="analyst",
                instructions="You are the sales analyst. Use the database and define the metric.",
                input=QUESTION,
                tools=[
                    {"type": "landfall", "name": "sales_db"},
                    {"type": "file_search", "vector_store_ids": [store]},
                ],
            )
            expect(response.status == "completed", f"the response is {response.status}")
            steps = [getattr(item, "name", item.type) for item in response.output]
            expect(
                steps == ["sales_db_schema", "sales_db", "file_search_call", "message"],
                f"expected schema, query, glossary search and answer, got {steps}",
            )
            for item in response.output[:2]:
                expect(item.error is None, f"{item.name} failed: {item.error}")
                print(f"  tool {item.name}({item.arguments}) ->\n    " + item.output.replace("\n", "\n    "))
            answer = response.output_text
            expect("Revenue is the invoiced amount" in answer, f"no definition in: {answer}")
            citations = response.output[-1].content[0].annotations
            expect(citations and citations[0].filename == "glossary.md", f"citations: {citations}")

            fenced = re.search(r"```json\n(.*?)\n```", answer, re.S)
            expect(fenced, f"the answer has no ```json block: {answer}")
            spec = json.loads(fenced.group(1))
            expect(spec.get("$schema", "").startswith("https://vega.github.io/schema/vega-lite/"), "not Vega-Lite")
            expect(spec["data"]["values"] == expected, f"chart data {spec['data']['values']} != database {expected}")
            print("assistant: " + answer[: fenced.start()].strip())

    (work / "revenue-2026-q1.vl.json").write_text(json.dumps(spec, indent=2))
    png = vl_convert.vegalite_to_png(vl_spec=spec, scale=2)
    expect(png.startswith(PNG_SIGNATURE) and len(png) > 5000, f"the PNG is {len(png)} bytes")
    (work / "revenue-2026-q1.png").write_bytes(png)
    print(f"chart: {len(spec['data']['values'])} bars, PNG {len(png)} bytes")
    print("report-assistant example: OK")


if __name__ == "__main__":
    support.main(run)
