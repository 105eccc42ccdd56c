"""dtype as a matrix dimension and the per-cell environment fingerprint: planning and keys (pure), and one
real headless run of a synthetic model in two dtypes, whose cells record what they ran on."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from matrix_helpers import pool_status, run_headless, worker_processes, write_config

from llorch_worker.api import WorkerInfo

from llorch_tui.config import MatrixConfig, PoolConfig
from llorch_tui.errors import LlorchError
from llorch_tui.matrix.classify import SKIP_CODES, classify_spawn_error
from llorch_tui.matrix.environment import env_changes, env_fingerprint, model_sha256
from llorch_tui.matrix.options import MatrixOptions
from llorch_tui.matrix.plan import PoolFacts, plan_pool
from llorch_tui.pool.weights_hash import weights_sha256
from llorch_tui.protocol.catalog import Catalog, ModelEntry
from llorch_tui.protocol.matrix import CellKey, CellResult, MatrixReport
from llorch_tui.protocol.parity import EnvFingerprint, ParityResult, weights_digest

SHA_A, SHA_B = "a" * 64, "b" * 64


def _entry(files: list[dict[str, object]]) -> ModelEntry:
    return ModelEntry.model_validate({"id": "m", "name": "m", "path": "/m", "architecture": "llama",
                                      "downloaded": True, "files": files})


def test_cell_key_carries_the_dtype_and_old_keys_read_as_auto() -> None:
    k = CellKey(pool="p", backend="cpu", model="m", dtype="bfloat16")
    assert (k.id, k.column) == ("p/cpu:bfloat16/m", "p/cpu:bfloat16")
    assert CellKey.parse(k.id) == k
    old = CellKey.model_validate({"pool": "p", "backend": "cpu", "model": "m"})  # a report from before dtypes
    assert old.dtype == "auto" and old.id == "p/cpu/m" and CellKey.parse("p/cpu/m") == old
    assert CellResult.model_validate_json('{"key": {"pool": "p", "backend": "cuda", "model": "m"}, '
                                          '"verdict": "pass"}').key.column == "p/cuda"


def test_plan_has_a_cell_per_backend_and_dtype() -> None:
    view = PoolFacts(PoolConfig(name="p"), online=True, catalog=Catalog(pool_id="p", models=[_entry([])]),
                    status=pool_status(backends=["cpu"], ram={"available": 10**10}, os="Linux"))
    cells = plan_pool(view, MatrixOptions(backends=["cpu", "cuda"], dtypes=["float32", "bfloat16"]))
    assert [c.key.id for c in cells] == ["p/cpu:float32/m", "p/cpu:bfloat16/m", "p/cuda:float32/m",
                                         "p/cuda:bfloat16/m"]
    assert [c.skipped for c in cells] == [False, False, True, True]
    assert cells[0].pool_status == view.status
    assert [c.key.id for c in plan_pool(view, MatrixOptions(backends=["cpu"]))] == ["p/cpu/m"]
    # Each dtype is judged on its own measured peak memory (recorded as "cpu:bfloat16"), never another dtype's.
    big = _entry([]).model_copy(update={"peak_memory": {"cpu": 10**11, "cpu:float16": 10**11}})
    view.catalog = Catalog(pool_id="p", models=[big])
    cells = plan_pool(view, MatrixOptions(backends=["cpu"], dtypes=["auto", "bfloat16", "float16"]))
    assert [c.skip_code for c in cells] == ["will_not_fit", None, "will_not_fit"]


def test_dtypes_from_config_and_flags() -> None:
    cfg = MatrixConfig(dtypes=["bfloat16"])
    assert MatrixOptions.from_config(cfg).cell_dtypes == ["bfloat16"]
    assert MatrixOptions.from_config(MatrixConfig()).cell_dtypes == ["auto"]
    args = argparse.Namespace(dtypes=["float16", "float32", "float16"])
    assert MatrixOptions.from_config(cfg, args).dtypes == ["float16", "float32"]
    with pytest.raises(ValueError, match="dtypes"):
        MatrixConfig.model_validate({"dtypes": ["float8"]})


def test_a_dtype_the_backend_cannot_do_is_a_skip() -> None:
    exc = LlorchError("worker_failed", "worker w (m on cpu, port 1) failed to start: dtype_unsupported: cpu cannot "
                      "compute in float16 here", "spawn with another --dtype", reason="dtype_unsupported", exit_code=4)
    code, exit_code = classify_spawn_error(exc)
    assert (code, exit_code) == ("dtype_unsupported", 4) and code in SKIP_CODES


def test_model_hash_prefers_the_parity_measurement_then_the_catalog() -> None:
    one = _entry([{"name": "model.safetensors", "size": 1, "sha256": SHA_A}, {"name": "config.json", "size": 1}])
    assert model_sha256(one) == weights_digest([("model.safetensors", SHA_A)])  # config.json is not a weight
    two = _entry([{"name": "b.safetensors", "size": 1, "sha256": SHA_B}, {"name": "a.safetensors", "size": 1,
                                                                             "sha256": SHA_A}])
    assert model_sha256(two) not in (None, SHA_A, SHA_B) and model_sha256(two) == model_sha256(
        _entry(list(reversed(two.model_dump()["files"]))))
    assert model_sha256(_entry([{"name": "model.safetensors", "size": 1}])) is None  # unknown, not guessed
    assert model_sha256(one, ParityResult(verdict="pass", weights_sha256=SHA_B)) == SHA_B


def test_environment_from_pool_and_worker_and_what_changed() -> None:
    status = pool_status(llorch_version="0.1.0", python="3.11.1", os="Linux 6.1 x86_64", kernel="6.1", cpu="EPYC",
                         driver_version="550.1", gpus=[{"index": 0, "name": "A100"}, {"index": 1, "name": "H100"}])
    info = WorkerInfo(worker_version="0.1.0", python="3.12.2", torch="2.13.0", transformers="5.0.0",
                      cuda="12.4", gpu=None, dtype="bfloat16")
    cpu = env_fingerprint(CellKey(pool="p", backend="cpu", model="m"), status, info, None)
    assert (cpu.python, cpu.torch, cpu.dtype, cpu.cpu, cpu.kernel) == ("3.12.2", "2.13.0", "bfloat16", "EPYC", "6.1")
    assert cpu.gpu is cpu.driver is cpu.cuda is None  # a GPU driver does not decide a cpu cell's numbers
    gpu = env_fingerprint(CellKey(pool="p", backend="cuda", model="m"), status, info, None, gpu_index=1)
    assert (gpu.gpu, gpu.driver, gpu.cuda) == ("H100", "550.1", "12.4")
    newer = gpu.model_copy(update={"torch": "2.14.0", "driver": "560.2", "model_sha256": SHA_B})
    assert env_changes(gpu.model_copy(update={"model_sha256": SHA_A}), newer) == [
        "torch 2.13.0 → 2.14.0", "driver 550.1 → 560.2", "model weights changed (sha256 aaaaaaaaaaaa → bbbbbbbbbbbb)"]
    assert env_changes(EnvFingerprint(), newer) == [] and env_changes(None, newer) == []


def test_headless_run_in_two_dtypes_records_the_environment(make_pool, synth_models: dict[str, Path],
                                                            tmp_path: Path) -> None:
    state = make_pool(models=("llama",), pool_id="local")
    config = write_config(tmp_path / "config.toml", state, tmp_path / "reports", parallel=2, max_tokens=6)
    run = run_headless(config, "--backends", "cpu", "--dtypes", "float32", "bfloat16")
    assert run.rc == 0, run.stderr_lines[-20:]
    lines = run.stdout_lines
    assert lines[-1] == "Test Results: 2 passed, 0 failed, 0 skipped"
    for dtype in ("float32", "bfloat16"):
        assert any(l.startswith(f"PASS  local/cpu:{dtype}/tiny-llama  ") for l in lines), lines
    report = MatrixReport.model_validate_json((tmp_path / "reports" / "matrix.json").read_text())
    assert report.options["dtypes"] == ["float32", "bfloat16"]
    by_dtype = {c.key.dtype: c for c in report.cells}
    assert set(by_dtype) == {"float32", "bfloat16"}
    for dtype, cell in by_dtype.items():
        env = cell.environment
        assert env is not None
        assert env.dtype == dtype  # the worker says what it computed in: the spawn passed the cell's dtype
        assert env.torch == importlib.metadata.version("torch")
        assert env.transformers == importlib.metadata.version("transformers")
        assert env.python == platform.python_version() and env.kernel == platform.release()
        assert env.os and env.cpu and env.llorch_version and env.worker_version
        # The agent's measurement on the files (the parity check's), the same digest the catalog gives.
        assert env.model_sha256 == weights_sha256(synth_models["llama"]) == model_sha256(
            ModelEntry.model_validate(json.loads((state / "catalog.json").read_text())["models"][0]))
        assert cell.parity is not None and cell.parity.verdict == "pass" and cell.parity.golden_skipped_reason
        assert env.gpu is None and env.faults == "none"  # a cpu cell, no fault injection
    catalog = json.loads((state / "catalog.json").read_text())
    verdicts = catalog["models"][0]["verdicts"]
    assert {k: v["verdict"] for k, v in verdicts.items()} == {"cpu:float32": "pass", "cpu:bfloat16": "pass"}
    assert set(catalog["models"][0]["peak_memory"]) == {"cpu:float32", "cpu:bfloat16"}
    md = (tmp_path / "reports" / "matrix.md").read_text()
    assert "| Model | local/cpu:float32 | local/cpu:bfloat16 |" in md
    parity_rows = [l for l in md[md.index("## Parity"):].splitlines() if l.startswith("| tiny-llama |")]
    assert [r.split(" | ")[1:3] for r in parity_rows] == [["local/cpu/bfloat16", "✅ pass"],
                                                         ["local/cpu/float32", "✅ pass"]]
    assert "skipped: synthetic random-weight checkpoint" in parity_rows[0]
    cases = ET.fromstring((tmp_path / "reports" / "matrix.junit.xml").read_text()).iter("testcase")
    assert {c.get("classname") for c in cases} == {"llorch.matrix.local.cpu.float32", "llorch.matrix.local.cpu.bfloat16"}
    assert worker_processes(state) == []
