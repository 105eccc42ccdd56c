"""Ports, the worker registry and the supervisor, on real sockets and real (tiny) processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

import psutil
import pytest

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.paths import PoolPaths
from llorch_tui.pool.ports import hold_port, pick_port, port_free
from llorch_tui.pool.worker_registry import Registry, is_worker_cmdline
from llorch_tui.protocol.workers import WorkerRecord


def _listen(port: int = 0) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # like the worker: a TIME_WAIT port is usable
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def test_explicit_port_taken_is_refused_and_default_moves_on() -> None:
    with _listen() as s:
        taken = s.getsockname()[1]
        assert not port_free(taken)
        with pytest.raises(LlorchError) as ei:
            pick_port(None, explicit=taken)
        assert ei.value.code == ErrorCode.PORT_IN_USE and str(taken) in ei.value.message
    assert pick_port(None, explicit=taken) == taken  # free again once the listener is gone


def test_default_port_skips_taken_and_reserved() -> None:
    first = pick_port(None)
    assert first >= 8000
    with _listen(first):
        second = pick_port(None)
        assert second > first
        # A worker still starting has not bound its port yet: the registry's reservation must count.
        assert pick_port(None, reserved=[second]) > second
    assert pick_port(3) >= 8003
    # The spawn's choice is a held, listening socket: a port free a moment ago stays the worker's.
    with hold_port(None) as held:
        assert held.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        assert not port_free(held.getsockname()[1]) and pick_port(None) != held.getsockname()[1]


@pytest.mark.parametrize("cmd, expected", [
    (["/v/bin/python3", "/v/bin/llorch-worker", "--worker-id", "x"], True),
    (["llorch-worker", "--port", "8000"], True),
    (["python", "-m", "llorch_worker.cli", "--port", "1"], True),
    (["python", "-m", "llorch_tui.pool.supervise", "--exit-file", "f", "--", "/v/bin/llorch-worker"], False),
    (["vim", "llorch-worker.log"], False),
    ([], False),
])
def test_worker_cmdline_match(cmd: list[str], expected: bool) -> None:
    assert is_worker_cmdline(cmd) is expected


def _record(paths: PoolPaths, pid: int, create_time: float | None, wid: str = "w1") -> WorkerRecord:
    return WorkerRecord(id=wid, model="m", backend="cpu", port=8000, pid=pid, pgid=pid, state="ready",
                        started_at=datetime.now(timezone.utc), create_time=create_time,
                        log_path=str(paths.logs_dir / f"{wid}.log"))


def test_reconcile_marks_dead_and_guards_pid_reuse(tmp_path: Path) -> None:
    paths = PoolPaths(tmp_path).ensure()
    reg = Registry(paths)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    me = psutil.Process()
    (paths.logs_dir / "w1.log").write_text('LLORCH_WORKER_ERROR {"code": "oom", "message": "out of memory"}\n')
    reg.put(_record(paths, gone.pid, None, "w1"))
    reg.put(_record(paths, me.pid, me.create_time() - 100, "w2"))  # same pid, another process: reused
    reg.put(_record(paths, me.pid, me.create_time(), "w3"))  # really this (live) process
    by_id = {r.id: r for r in reg.reconcile()}
    assert by_id["w1"].state == "dead" and by_id["w1"].error_code == "oom" and "out of memory" in by_id["w1"].exit_reason
    assert by_id["w2"].state == "dead"
    assert by_id["w3"].state == "ready"
    assert {r.id: r.state for r in reg.load()} == {"w1": "dead", "w2": "dead", "w3": "ready"}  # persisted


def test_corrupt_registry_is_an_error_and_left_alone(tmp_path: Path) -> None:
    paths = PoolPaths(tmp_path).ensure()
    paths.workers.write_text("{not json")
    with pytest.raises(LlorchError) as ei:
        Registry(paths).load()
    assert ei.value.code == ErrorCode.REGISTRY_CORRUPT and "mv" in (ei.value.hint or "")
    assert paths.workers.read_text() == "{not json"


def test_unreadable_or_unwritable_registry_is_a_llorch_error(tmp_path: Path) -> None:
    # A directory where workers.json should be: reading and the atomic rename both fail with an OSError.
    paths = PoolPaths(tmp_path).ensure()
    paths.workers.mkdir()
    with pytest.raises(LlorchError) as ei:
        Registry(paths).load()
    assert ei.value.code == ErrorCode.REGISTRY_CORRUPT
    with pytest.raises(LlorchError) as ei:
        Registry(paths).save([])
    assert ei.value.code == ErrorCode.INTERNAL and str(paths.workers) in ei.value.message
    assert paths.workers.is_dir() and not list(paths.workers.parent.glob(".workers.json.*.tmp"))


def _supervise(tmp_path: Path, code: str) -> tuple[subprocess.Popen[bytes], Path, int, BinaryIO]:
    """Start the supervisor around `python -c CODE`; the worker's pid arrives on the pid pipe (no polling)."""
    exit_file = tmp_path / "w.exit"
    r, w = os.pipe()
    sup = subprocess.Popen([sys.executable, "-m", "llorch_tui.pool.supervise", "--exit-file", str(exit_file),
                            "--pid-fd", str(w), "--", sys.executable, "-c", code],
                           pass_fds=(w,), start_new_session=True, stdin=subprocess.DEVNULL)
    os.close(w)
    pipe = open(r, "rb", buffering=0)
    return sup, exit_file, int(pipe.readline()), pipe


def test_supervisor_records_exit_code(tmp_path: Path) -> None:
    sup, exit_file, child, pipe = _supervise(tmp_path, "import sys; sys.exit(3)")
    with pipe:
        assert pipe.read() == b""  # EOF exactly when the supervisor is gone
    assert sup.wait(10) == 3
    doc = json.loads(exit_file.read_text())
    assert doc["returncode"] == 3 and doc["signal"] is None and doc["worker_pid"] == child


def test_supervisor_records_a_kill(tmp_path: Path) -> None:
    sup, exit_file, _, pipe = _supervise(tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    pipe.close()
    sup.wait(10)
    assert json.loads(exit_file.read_text())["signal"] == "SIGKILL"


def test_supervisor_forwards_sigterm_to_the_worker_group(tmp_path: Path) -> None:
    sup, exit_file, child, pipe = _supervise(tmp_path, "import time; time.sleep(60)")
    try:
        pipe.close()
        assert os.getpgid(child) == child != os.getpgid(sup.pid)  # the worker leads a group of its own
        sup.send_signal(signal.SIGTERM)  # only the supervisor: it must pass it on
        assert sup.wait(10) == 128 + signal.SIGTERM
        assert json.loads(exit_file.read_text())["signal"] == "SIGTERM"
        assert not psutil.pid_exists(child)
    finally:
        if sup.poll() is None:
            os.killpg(child, signal.SIGKILL)
            sup.kill()
            sup.wait()


def test_supervisor_imports_nothing_heavy(tmp_path: Path) -> None:
    """It sits next to every worker for hours: no torch, no pydantic, no aiohttp in it."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "llorch_tui.pool.supervise", "--exit-file",
                           str(tmp_path / "x.exit"), "--", sys.executable, "-c", "pass"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert "argparse" in imported  # the importtime output was really parsed
    assert not imported & {"torch", "transformers", "pydantic", "aiohttp", "psutil", "llorch_worker"}
