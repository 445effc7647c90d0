"""Session fixtures for the end-to-end test: real processes on free 127.0.0.1 ports.

- ``mock_upstream``: the ``landfall-mock-upstream`` binary (``$MOCK_UPSTREAM_BIN``) serving its
  default echo behaviours.
- ``limited_upstream``: a tiny threaded stdlib HTTP server that answers every
  ``POST /v1/chat/completions`` with 429, ``Retry-After: 1`` and an OpenAI error body.
- ``landfall``: ``$LANDFALL_BIN serve`` with a generated config routing to both, plus a dead
  provider on a closed port.

Every wait is bounded; a missing binary fails the session rather than skipping it. Processes
are terminated at session end, and killed if they do not exit in time.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import openai
import pytest

try:  # openai < 3 ships on httpx; openai 3 on its fork, httpx2, which has the same API.
    import httpx
except ImportError:  # pragma: no cover - depends on the pinned SDK
    import httpx2 as httpx  # type: ignore[no-redef]

ADMIN_KEY = "e2e-admin-key-0123456789"
# Filled by the ``landfall`` fixture: the secret of a key created through the admin API.
KEYS: dict[str, str] = {}
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 30.0
MAX_BODY_BYTES = 65536
MODEL_NAMES = ("chat", "embed", "fallback", "limited", "limited-fallback")

# Loopback traffic must never go through a proxy from the environment.
for _name in ("NO_PROXY", "no_proxy"):
    _existing = os.environ.get(_name, "")
    os.environ[_name] = ",".join(filter(None, [_existing, "127.0.0.1", "localhost"]))


def _binary(variable: str) -> Path:
    value = os.environ.get(variable)
    if not value:
        pytest.fail(f"${variable} is not set: run the end-to-end test through scripts/e2e.sh")
    path = Path(value)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"${variable}={value} is not an executable file: build it first")
    return path


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(cannot read {path}: {error})"
    return text[-limit:] if text else "(empty)"


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within the timeout."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


def _clean_env() -> dict[str, str]:
    """The environment without variables that would change landfall's configuration."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("LANDFALL__") and name != "LANDFALL_CONFIG"
    }
    env["NO_COLOR"] = "1"
    env.setdefault("LANDFALL_LOG", "info")
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class MockUpstream:
    base_url: str


@contextlib.contextmanager
def peer(argv: list[str], stderr_path: Path, prefix: str, **options) -> Iterator[str]:
    """Runs a peer process that announces itself with a first stdout line ``PREFIX REST``;
    yields REST (its address or ports) and stops the process at exit."""
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=stderr, env=_clean_env(), **options
        )
    try:
        # readline() blocks, so it runs in a thread and the wait on its result is bounded.
        lines: queue.Queue[bytes] = queue.Queue()
        reader = threading.Thread(
            target=lambda: lines.put(process.stdout.readline()), daemon=True
        )
        reader.start()
        try:
            line = lines.get(timeout=STARTUP_TIMEOUT_S).decode(errors="replace").strip()
        except queue.Empty:
            pytest.fail(
                f"{argv[0]} printed nothing within {STARTUP_TIMEOUT_S:.0f} s; "
                f"stderr:\n{_tail(stderr_path)}"
            )
        if not line.startswith(prefix):
            process.poll()
            pytest.fail(
                f"{argv[0]} said {line!r} (exit status {process.returncode}) instead of "
                f"'{prefix}…'; stderr:\n{_tail(stderr_path)}"
            )
        yield line[len(prefix) :].strip()
    finally:
        _stop(process)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture(scope="session")
def mock_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockUpstream]:
    binary = _binary("MOCK_UPSTREAM_BIN")
    stderr_path = tmp_path_factory.mktemp("mock-upstream") / "stderr.log"
    argv = [str(binary), "--listen", "127.0.0.1:0"]
    with peer(argv, stderr_path, "listening on ", stdin=subprocess.DEVNULL) as address:
        yield MockUpstream(base_url=f"http://{address}/v1")


@dataclass
class LimitedUpstream:
    base_url: str
    hits: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hit_count(self) -> int:
        with self.lock:
            return len(self.hits)


class _RateLimitedHandler(BaseHTTPRequestHandler):
    """Answers POST /v1/chat/completions with 429 and `Retry-After: 1`; anything else 404."""

    protocol_version = "HTTP/1.1"
    server: "StateServer"

    def _send_json(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        with self.server.state.lock:
            self.server.state.hits.append(self.path)
        self._send_json(
            429,
            {
                "error": {
                    "message": "Rate limit reached for requests",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
            {"Retry-After": "1"},
        )

    def do_GET(self) -> None:  # noqa: N802
        self._send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # keep the test output quiet


class StateServer(ThreadingHTTPServer):
    """A threaded stdlib server whose handlers share `state`."""

    daemon_threads = True
    state: object


@contextlib.contextmanager
def in_thread(handler: type[BaseHTTPRequestHandler], state) -> Iterator[str]:
    """Serves HANDLER on a free 127.0.0.1 port in a thread, its handlers seeing STATE as
    ``self.server.state``; yields ``http://127.0.0.1:PORT``."""
    server = StateServer(("127.0.0.1", 0), handler)
    server.state = state
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="session")
def limited_upstream() -> Iterator[LimitedUpstream]:
    state = LimitedUpstream(base_url="")
    with in_thread(_RateLimitedHandler, state) as url:
        state.base_url = f"{url}/v1"
        yield state


def _minilm() -> Path | None:
    """The MiniLM test model scripts/fetch-test-models.sh caches, if present."""
    root = Path(os.environ.get("LANDFALL_TEST_MODELS", Path.home() / ".cache/landfall-test"))
    folder = root / "all-MiniLM-L6-v2"
    return folder if (folder / "model.safetensors").is_file() else None


def _knowledge(directory: Path) -> str:
    embedder = _minilm()
    text = f'[knowledge]\nindex_dir = "{directory / "index"}"\n'
    if embedder is not None:
        text += f'[knowledge.embedder]\ntype = "local"\nmodel = "{embedder}"\n'
    return text


def _config(mock_url: str, limited_url: str, database: Path) -> str:
    return _knowledge(database.parent) + f"""\
[server]
max_body_bytes = {MAX_BODY_BYTES}
shutdown_grace_ms = 2000

[auth]
admin_key = "{ADMIN_KEY}"

[storage.metadata]
type = "sqlite"
path = "{database}"

[accounting]
flush_interval_ms = 50

# Shedding is tested in Rust; here the test machine's own load must not shed requests.
[shedding]
enabled = false

[routing]
max_attempts = 4
retries_per_target = 1
backoff_initial_ms = 10
backoff_max_ms = 50

[providers.mock]
type = "openai"
base_url = "{mock_url}"
api_key = "upstream-key"

[providers.limited]
type = "openai"
base_url = "{limited_url}"

[providers.dead]
type = "openai"
base_url = "http://127.0.0.1:1/v1"
connect_timeout_ms = 2000

[models.chat]
targets = [{{ provider = "mock", model = "mock-chat" }}]

[models.embed]
targets = [{{ provider = "mock", model = "mock-embedding" }}]

[models.fallback]
targets = [
  {{ provider = "dead", model = "dead-chat", priority = 0 }},
  {{ provider = "mock", model = "mock-chat", priority = 1 }},
]

[models.limited-fallback]
targets = [
  {{ provider = "limited", model = "limited-chat", priority = 0 }},
  {{ provider = "mock", model = "mock-chat", priority = 1 }},
]

[models.limited]
targets = [{{ provider = "limited", model = "limited-chat" }}]

# A built-in tool for the Responses tests: read-only SQL on a small SQLite shop.
[tools.shop]
type = "sql"
url = "sqlite://{_shop(database.parent)}"
"""


def _shop(directory: Path) -> Path:
    """A SQLite database with a few orders, for the ``sql`` tool."""
    path = directory / "shop.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, total REAL)")
        connection.executemany(
            "INSERT INTO orders VALUES (?, ?, ?)", [(1, "Ada", 120.5), (2, "Lin", 80.0)]
        )
    return path


@dataclass
class Landfall:
    url: str
    base_url: str
    process: subprocess.Popen
    stderr_path: Path

    def stderr(self) -> str:
        return _tail(self.stderr_path)


def _wait_healthy(process: subprocess.Popen, url: str, stderr_path: Path) -> bool:
    """True once GET /healthz answers 200; False if the process exited (e.g. port taken)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_error = "no attempt yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            response = httpx.get(f"{url}/healthz", timeout=2.0, trust_env=False)
            if response.status_code == 200:
                return True
            last_error = f"HTTP {response.status_code}"
        except httpx.HTTPError as error:
            last_error = repr(error)
        time.sleep(0.1)
    pytest.fail(
        f"landfall did not answer GET /healthz with 200 within {STARTUP_TIMEOUT_S:.0f} s "
        f"(last: {last_error}); stderr:\n{_tail(stderr_path)}"
    )


@contextlib.contextmanager
def serve(directory: Path, config: str) -> Iterator[Landfall]:
    """``$LANDFALL_BIN serve`` with CONFIG (written to DIRECTORY) on a free port, until exit."""
    binary = _binary("LANDFALL_BIN")
    config_path = directory / "landfall.toml"
    config_path.write_text(config)
    # The port is picked free and then handed over, so another process may take it in between:
    # landfall then exits at once and the start is retried on a new port.
    for attempt in range(3):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        stderr_path = directory / f"stderr-{attempt}.log"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [str(binary), "serve", "--config", str(config_path), "--listen", f"127.0.0.1:{port}"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=_clean_env(),
                cwd=directory,  # what the config leaves at its defaults (./landfall-data) goes here
            )
        try:
            healthy = _wait_healthy(process, url, stderr_path)
        except BaseException:
            _stop(process)
            raise
        if healthy:
            break
        if "cannot listen" not in _tail(stderr_path):
            pytest.fail(
                f"landfall exited with status {process.returncode} during start-up; "
                f"stderr:\n{_tail(stderr_path)}"
            )
    else:
        pytest.fail(f"landfall could not bind a free port in 3 tries; stderr:\n{_tail(stderr_path)}")
    try:
        yield Landfall(url=url, base_url=f"{url}/v1", process=process, stderr_path=stderr_path)
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def landfall(
    tmp_path_factory: pytest.TempPathFactory,
    mock_upstream: MockUpstream,
    limited_upstream: LimitedUpstream,
) -> Iterator[Landfall]:
    directory = tmp_path_factory.mktemp("landfall")
    config = _config(mock_upstream.base_url, limited_upstream.base_url, directory / "landfall.db")
    with serve(directory, config) as server:
        KEYS["default"] = create_key(server, {"id": "e2e"}, {})
        yield server


def admin(landfall: Landfall, method: str, path: str, body: dict | None = None) -> httpx.Response:
    """A call to the admin API with the admin key."""
    return httpx.request(
        method,
        f"{landfall.url}/admin/v1{path}",
        json=body,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=REQUEST_TIMEOUT_S,
        trust_env=False,
    )


def create_key(landfall: Landfall, tenant: dict, key: dict) -> str:
    """Creates a tenant and a key of it through the admin API; returns the key's secret."""
    response = admin(landfall, "POST", "/tenants", tenant)
    assert response.status_code == 201, response.text
    response = admin(landfall, "POST", "/keys", {**key, "tenant_id": response.json()["id"]})
    assert response.status_code == 201, response.text
    return response.json()["secret"]


@pytest.fixture(scope="session")
def client(landfall: Landfall) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=landfall.base_url,
        api_key=KEYS["default"],
        max_retries=0,
        timeout=REQUEST_TIMEOUT_S,
    ) as sdk_client:
        yield sdk_client


@pytest.fixture(scope="session")
def http(landfall: Landfall) -> Iterator[httpx.Client]:
    """A raw HTTP client for what the SDK will not send (wrong types, wrong content type)."""
    with httpx.Client(base_url=landfall.url, timeout=REQUEST_TIMEOUT_S, trust_env=False) as raw:
        yield raw


@pytest.fixture(autouse=True)
def _landfall_still_running(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test that used landfall, fail loudly if the server died during it."""
    yield
    if "landfall" not in request.fixturenames:
        return
    server: Landfall = request.getfixturevalue("landfall")
    if server.process.poll() is not None:
        pytest.fail(
            f"landfall exited with status {server.process.returncode} during the test; "
            f"stderr:\n{server.stderr()}"
        )
