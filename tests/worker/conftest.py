"""Session fixtures for the worker tests: one shared worker per architecture (started together, on
the session-wide `synth_models` checkpoints from tests/conftest.py) and a callback receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from workerproc import ARCHS, WorkerProc



@pytest.fixture(scope="session")
def workers(synth_models: dict[str, Path]) -> Iterator[dict[str, WorkerProc]]:
    """One running worker per architecture, shared by every API test."""
    procs = {a: WorkerProc(synth_models[a], "--dtype", "float32", worker_id=f"shared-{a}") for a in ARCHS}
    try:
        for p in procs.values():
            p.wait_ready()
        yield procs
    finally:
        for p in procs.values():  # signal all first: they shut down in parallel
            p.signal_term()
        for p in procs.values():
            p.close()


@pytest.fixture(scope="session")
def llama(workers: dict[str, WorkerProc]) -> str:
    return workers["llama"].url


class CallbackServer:
    """Collects the JSON bodies POSTed by workers; `wait_for` blocks on a matching event."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(n))
                with outer._cond:
                    outer.bodies.append(body)
                    outer._cond.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, worker_id: str, status: str, timeout: float = 180) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            return next((b for b in self.bodies if b.get("worker_id") == worker_id and b.get("status") == status),
                        None)

        with self._cond:
            self._cond.wait_for(lambda: find() is not None, timeout)
            found = find()
        assert found is not None, f"no {status!r} callback from {worker_id}: got {self.bodies}"
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def callback() -> Iterator[CallbackServer]:
    cb = CallbackServer()
    yield cb
    cb.close()
