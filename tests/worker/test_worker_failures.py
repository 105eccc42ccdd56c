"""Start-up failures: each exits with its code, names the file and the problem, prints the
LLORCH_WORKER_ERROR line and reports to the callback URL. No model loads in any of them."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from workerproc import WorkerProc

pytestmark = pytest.mark.slow


def broken_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def run_failing(model: Path | str, callback, *extra: str, worker_id: str) -> tuple[int, dict, WorkerProc]:
    w = WorkerProc(model, "--callback-url", callback.url, *extra, worker_id=worker_id)
    try:
        rc = w.wait_exit(240)
        err = w.error_line()
        assert err is not None, w.stderr()
        assert w.ready is None
        return rc, err, w
    finally:
        w.close()


def test_invalid_model_path(tmp_path: Path, callback) -> None:
    missing = tmp_path / "no-such-model"
    rc, err, _ = run_failing(missing, callback, worker_id="f-path")
    assert rc == 3 and err["code"] == "model_invalid"
    assert str(missing) in err["message"] and "does not exist" in err["message"]
    cb = callback.wait_for("f-path", "failed")
    assert cb["error"]["code"] == "model_invalid"


def test_missing_tokenizer(tmp_path: Path, synth_models: dict, callback) -> None:
    model = broken_copy(synth_models["llama"], tmp_path / "m")
    (model / "tokenizer.json").unlink()
    rc, err, _ = run_failing(model, callback, worker_id="f-tok")
    assert rc == 3 and err["code"] == "tokenizer_missing" and "tokenizer" in err["message"]
    assert callback.wait_for("f-tok", "failed")["error"]["code"] == "tokenizer_missing"


def test_truncated_safetensors(tmp_path: Path, synth_models: dict, callback) -> None:
    model = broken_copy(synth_models["qwen2"], tmp_path / "m")
    weights = model / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    rc, err, _ = run_failing(model, callback, worker_id="f-trunc")
    assert rc == 3 and err["code"] == "checkpoint_corrupt"
    assert err["file"] == str(weights) and "truncated" in err["message"]
    assert callback.wait_for("f-trunc", "failed")["error"]["code"] == "checkpoint_corrupt"


def test_corrupt_safetensors_header(tmp_path: Path, synth_models: dict, callback) -> None:
    model = broken_copy(synth_models["phi3"], tmp_path / "m")
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:20] = b"\x00garbage!!\xff\xfe\x00"
    weights.write_bytes(bytes(data))
    rc, err, _ = run_failing(model, callback, worker_id="f-corrupt")
    assert rc == 3 and err["code"] == "checkpoint_corrupt" and err["file"] == str(weights)
    assert "corrupt" in err["message"]


def test_cuda_backend_unavailable_here(synth_models: dict, callback) -> None:
    w = WorkerProc(synth_models["llama"], "--callback-url", callback.url, backend="cuda", worker_id="f-cuda")
    try:
        rc = w.wait_exit(240)
        err = w.error_line()
        assert w.listening is None, "the port must not be bound when the backend is missing"
    finally:
        w.close()
    assert rc == 4 and err is not None and err["code"] == "backend_unavailable"
    assert "cuda" in err["message"] and "--backend cpu" in err["message"]
    assert callback.wait_for("f-cuda", "failed")["error"]["code"] == "backend_unavailable"


def test_port_in_use(synth_models: dict, callback) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        w = WorkerProc(synth_models["llama"], "--callback-url", callback.url, port=port, worker_id="f-port")
        try:
            rc = w.wait_exit(240)
            err = w.error_line()
        finally:
            w.close()
    assert rc == 5 and err is not None and err["code"] == "port_in_use" and str(port) in err["message"]
    assert callback.wait_for("f-port", "failed")["error"]["code"] == "port_in_use"


def test_non_loopback_host_needs_a_token(synth_models: dict) -> None:
    proc = subprocess.run([sys.executable, "-m", "llorch_worker", "--worker-id", "x", "--model",
                           str(synth_models["llama"]), "--backend", "cpu", "--port", "0", "--host", "0.0.0.0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--token" in proc.stderr and "0.0.0.0" in proc.stderr


@pytest.mark.parametrize("mutilate,expected", [
    ("truncate", "truncated"), ("no-config", "missing config.json"), ("ok", None)])
def test_check_command(tmp_path: Path, synth_models: dict, mutilate: str, expected: str | None) -> None:
    import json

    model = broken_copy(synth_models["mistral"], tmp_path / "m")
    if mutilate == "truncate":
        w = model / "model.safetensors"
        w.write_bytes(w.read_bytes()[:-100])
    elif mutilate == "no-config":
        (model / "config.json").unlink()
    args = [sys.executable, "-m", "llorch_worker.check", "--model", str(model), "--json"]
    if mutilate == "ok":
        args.append("--load")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=240)
    report = json.loads(proc.stdout)
    if expected is None:
        assert proc.returncode == 0 and report == {"ok": True, "problems": []}
    else:
        assert proc.returncode == 3 and report["ok"] is False
        assert any(expected in p["problem"] for p in report["problems"]), report
