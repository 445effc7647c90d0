"""What both examples share: starting the scripted model and Landfall on free 127.0.0.1 ports,
the admin API, and a knowledge base made of files.

Every wait is bounded and every process is stopped on exit, even when the example fails.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import openai

try:  # openai < 3 ships on httpx; openai 3 on its fork, httpx2, which has the same API.
    import httpx
except ImportError:  # pragma: no cover - depends on the installed SDK
    import httpx2 as httpx  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
ADMIN_KEY = "example-admin-key-0123456789"
STARTUP_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 60.0

for _name in ("NO_PROXY", "no_proxy"):  # loopback traffic never goes through a proxy
    os.environ[_name] = ",".join(filter(None, [os.environ.get(_name, ""), "127.0.0.1"]))


class ExampleFailed(Exception):
    """The example did not go as it should; the message says how."""


def expect(condition: object, message: str) -> None:
    if not condition:
        raise ExampleFailed(message)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _first_line(process: subprocess.Popen, what: str) -> str:
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=STARTUP_TIMEOUT_S).decode(errors="replace").strip()
    except queue.Empty:
        raise ExampleFailed(f"{what} printed nothing within {STARTUP_TIMEOUT_S:.0f} s") from None


@contextlib.contextmanager
def scripted_model() -> Iterator[str]:
    """Runs examples/scripted_model.py; yields its root URL (``http://127.0.0.1:PORT``)."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / "scripted_model.py"), "--listen", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    try:
        line = _first_line(process, "the scripted model")
        expect(line.startswith("listening on "), f"the scripted model said {line!r}")
        yield f"http://{line.removeprefix('listening on ')}"
    finally:
        _stop(process)
        process.stdout.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Landfall:
    url: str
    log: Path

    def admin(self, method: str, path: str, body: dict | None = None) -> dict:
        response = httpx.request(
            method,
            f"{self.url}/admin/v1{path}",
            json=body,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=REQUEST_TIMEOUT_S,
            trust_env=False,
        )
        expect(response.is_success, f"{method} /admin/v1{path}: {response.status_code} {response.text}")
        return response.json()

    def client(self, tenant: str, tools: list[str]) -> openai.OpenAI:
        """An SDK client with a new key of a new tenant, allowed the ``[tools]`` entries TOOLS."""
        created = self.admin("POST", "/tenants", {"id": tenant})
        key = self.admin(
            "POST",
            "/keys",
            {"tenant_id": created["id"], "name": f"{tenant} example", "scopes": {"tools": tools}},
        )
        return openai.OpenAI(
            base_url=f"{self.url}/v1",
            api_key=key["secret"],
            max_retries=0,
            timeout=REQUEST_TIMEOUT_S,
        )


@contextlib.contextmanager
def landfall(binary: str, config: Path, work: Path, overrides: dict[str, str]) -> Iterator[Landfall]:
    """``landfall serve --config CONFIG`` with its data under WORK and ``LANDFALL__`` overrides."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("LANDFALL__") and name != "LANDFALL_CONFIG"
    }
    # Load shedding stays off: on a busy test machine its CPU reading would refuse requests.
    environment |= {
        "NO_COLOR": "1",
        "LANDFALL_ADMIN_KEY": ADMIN_KEY,
        "LANDFALL__SHEDDING__ENABLED": "false",
        **overrides,
    }
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / "landfall.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [binary, "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
            cwd=work,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise ExampleFailed(f"landfall exited ({process.returncode}):\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=2, trust_env=False).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise ExampleFailed(f"landfall did not become healthy:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield Landfall(url=url, log=log)
    finally:
        _stop(process)


def knowledge_base(client: openai.OpenAI, name: str, files: list[Path]) -> str:
    """A vector store holding FILES, ingested; returns its id."""
    uploaded = [client.files.create(file=path.open("rb"), purpose="assistants").id for path in files]
    store = client.vector_stores.create(name=name)
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id, file_ids=uploaded, poll_interval_ms=100
    )
    expect(
        batch.file_counts.completed == len(files),
        f"ingestion of {[path.name for path in files]} did not complete: {batch.file_counts}",
    )
    return store.id


def main(run) -> None:
    """Calls ``run(landfall_binary, work_dir)``; prints the failure and exits 1 if it fails."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser()
    parser.add_argument("--landfall", default=os.environ.get("LANDFALL_BIN", "landfall"))
    parser.add_argument("--out", help="where to leave what the example made (default: a temp dir)")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="landfall-example-") as temporary:
        work = Path(arguments.out or temporary).resolve()
        work.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(work / "landfall-data", ignore_errors=True)  # each run starts afresh
        try:
            run(arguments.landfall, work)
        except (ExampleFailed, openai.APIError, httpx.HTTPError) as failure:
            print(f"FAILED: {failure}", file=sys.stderr)
            log = work / "landfall.log"
            if log.exists():
                print(f"--- landfall log (tail)\n{log.read_text()[-3000:]}", file=sys.stderr)
            sys.exit(1)
