"""Assertions on the session's one real headless matrix run (see conftest.main_run)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from matrix_helpers import CORRUPT_MODEL, KILLED_MODEL, STABILITY_REQUESTS, MainRun, worker_processes

from llorch_tui.matrix.events import parse_event  # noqa: F401  (import check of the public API)
from llorch_tui.protocol.matrix import MATRIX_REPORT_VERSION

PASSING = ("tiny-llama", "tiny-qwen2", "tiny-phi3")


def _cell(main_run: MainRun, key: str):
    return next(c for c in main_run.report.cells if c.key.id == key)


def test_exit_status_and_final_line(main_run: MainRun) -> None:
    r = main_run.run
    assert r.rc == 1, r.stderr_lines[-20:]  # two cells failed
    assert r.stdout_lines[-1] == "Test Results: 3 passed, 2 failed, 10 skipped"


def test_a_line_per_cell(main_run: MainRun) -> None:
    cell_lines = main_run.run.stdout_lines[:-1]
    assert len(cell_lines) == 15
    for model in PASSING:
        assert any(l.startswith(f"PASS  local/cpu/{model}  ") and "tok/s" in l for l in cell_lines), cell_lines
    assert any(l.startswith(f"FAIL  local/cpu/{CORRUPT_MODEL}  checkpoint_corrupt:") for l in cell_lines)
    assert any(l.startswith("SKIP  local/cuda/tiny-llama  backend_absent:") for l in cell_lines)


def test_corrupted_checkpoint_fails_with_that_reason(main_run: MainRun) -> None:
    c = _cell(main_run, f"local/cpu/{CORRUPT_MODEL}")
    assert c.verdict == "fail" and c.reason_code == "checkpoint_corrupt"
    assert "model.safetensors" in (c.reason or "")
    assert c.exit_code == 3  # the worker's exit code for model/checkpoint problems
    assert any("LLORCH_WORKER_ERROR" in line for line in c.log_tail)


def test_worker_killed_mid_cell_fails_only_that_cell(main_run: MainRun) -> None:
    assert main_run.killed_pid is not None, main_run.run.stderr_lines
    c = _cell(main_run, f"local/cpu/{KILLED_MODEL}")
    assert c.verdict == "fail" and c.reason_code == "crash", (c.reason_code, c.reason)
    assert "signal" in (c.reason or "").lower() or "killed" in (c.reason or "").lower(), c.reason
    for model in PASSING:
        assert _cell(main_run, f"local/cpu/{model}").verdict == "pass"


def test_skipped_backends_are_planned_with_reasons(main_run: MainRun) -> None:
    skipped = [c for c in main_run.report.cells if c.verdict == "skipped"]
    assert {c.key.backend for c in skipped} == {"cuda", "metal"}
    assert all(c.reason_code == "backend_absent" and c.key.backend in (c.reason or "") for c in skipped)


def test_measurements_of_passing_cells(main_run: MainRun) -> None:
    for model in PASSING:
        m = _cell(main_run, f"local/cpu/{model}").measurements
        assert m.load_s and m.load_s > 0
        assert m.ttft_ms is not None and m.ttft_ms > 0
        assert m.tokens_per_second and m.tokens_per_second > 0
        assert m.tokens_generated and 1 <= m.tokens_generated <= 8
        assert m.peak_rss_bytes and m.peak_rss_bytes > 50_000_000  # a python with torch loaded
        assert m.device_peak_bytes is None  # cpu
        assert m.worker_start_s and m.spawn_s and m.spawn_s >= m.worker_start_s
        assert m.cell_s and m.overhead_s is not None and m.overhead_s < m.cell_s


def test_json_report_schema(main_run: MainRun) -> None:
    raw = json.loads((main_run.report_dir / "matrix.json").read_text())
    assert raw["version"] == MATRIX_REPORT_VERSION
    assert raw["summary"] == {"passed": 3, "failed": 2, "skipped": 10, "duration_s": raw["summary"]["duration_s"]}
    assert [p["name"] for p in raw["pools"]] == ["local"] and raw["pools"][0]["backends"] == ["cpu"]
    assert len(list((main_run.report_dir / "runs").glob("matrix-*.json"))) >= 1


def test_markdown_matrix(main_run: MainRun) -> None:
    md = (main_run.report_dir / "matrix.md").read_text()
    header = next(l for l in md.splitlines() if l.startswith("| Model |"))
    assert header == "| Model | local/cpu | local/cuda | local/metal |"
    row = next(l for l in md.splitlines() if l.startswith("| tiny-llama |"))
    assert "✅" in row and "tok/s" in row and "⏭ [" in row
    bad = next(l for l in md.splitlines() if l.startswith(f"| {CORRUPT_MODEL} |"))
    note = bad.split("❌ [")[1].split("]")[0]
    assert any(l.startswith(f"{note}. `local/cpu/{CORRUPT_MODEL}` — checkpoint_corrupt") for l in md.splitlines())
    assert md.rstrip().endswith("Test Results: 3 passed, 2 failed, 10 skipped")


def test_junit_has_a_testcase_per_cell(main_run: MainRun) -> None:
    root = ET.parse(main_run.report_dir / "matrix.junit.xml").getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == 15
    fails = [c for c in cases if c.find("failure") is not None]
    assert sorted(c.get("name") for c in fails) == sorted([CORRUPT_MODEL, KILLED_MODEL])
    assert sum(1 for c in cases if c.find("skipped") is not None) == 10
    corrupt = next(c for c in fails if c.get("name") == CORRUPT_MODEL)
    assert corrupt.get("classname") == "llorch.matrix.local.cpu"
    assert corrupt.find("failure").get("type") == "checkpoint_corrupt"


def test_bench_table(main_run: MainRun) -> None:
    for model in PASSING:
        b = _cell(main_run, f"local/cpu/{model}").bench
        assert b is not None and b.iterations == 2 and len(b.samples_tokens_per_second) == 2
        assert b.tokens_per_second_mean > 0 and b.tokens_per_second_p50 > 0 and b.ttft_ms_p50 > 0
        # llama-bench rates at exact lengths, vLLM-style percentiles per concurrency, start-up stages
        assert (b.pp_tokens, b.tg_tokens) == (128, 32) and b.pp_tps_mean and b.tg_tps_mean, b
        assert b.pp_tps_sd is not None and b.tg_tps_sd is not None
        assert [(lv.concurrency, lv.requests, lv.tokens) for lv in b.levels] == [(1, 2, 64), (4, 8, 256)]
        for lv in b.levels:
            assert 0 < lv.ttft_ms_p50 <= lv.ttft_ms_p90 <= lv.ttft_ms_p99 and lv.throughput_tps > 0
            assert 0 < lv.itl_ms_p50 <= lv.itl_ms_p99 and lv.tpot_ms_p50 > 0
        assert set(b.startup) == {"process", "weights_to_ram", "to_device", "warmup"}
    md = (main_run.report_dir / "matrix.md").read_text()
    assert "## Performance benchmarks" in md
    assert "## Prompt processing and generation (llama-bench style, mean ± σ)" in md
    assert "## Latency per concurrency (ms, p50 / p90 / p99)" in md and "## Start-up stages (s)" in md
    rows = [l for l in md.splitlines() if "| local/cpu | 2 × 8 |" in l]
    for model in PASSING:  # (the killed cell may have a row too: its bench ran before the kill)
        assert any(l.startswith(f"| {model} |") for l in rows), rows
    # The same figures reach the JUnit properties and the TUI's cell detail.
    from llorch_tui.matrix.events import CellFinished
    from llorch_tui.tui.core.matrix_grid import MatrixGrid

    root = ET.parse(main_run.report_dir / "matrix.junit.xml").getroot()
    for model in PASSING:
        cell = _cell(main_run, f"local/cpu/{model}")
        tc = next(t for t in root.iter("testcase") if t.get("name") == model)
        props = {p.get("name"): p.get("value") for p in tc.iter("property")}
        assert float(props["bench.pp_tps_mean"]) == cell.bench.pp_tps_mean and props["bench.tg_tokens"] == "32"
        for c in (1, 4):
            assert all(f"bench.c{c}.{m}_ms_p{q}" in props for m in ("ttft", "tpot", "itl") for q in (50, 90, 99))
        assert {k.removeprefix("bench.startup.") for k in props if k.startswith("bench.startup.")} == {
            "process", "weights_to_ram", "to_device", "warmup", "ready", "first_token"}
        grid = MatrixGrid()
        grid.apply(CellFinished(result=cell))
        detail = grid.detail(cell.key.id)
        assert f"pp128 {cell.bench.pp_tps_mean:.1f} ± " in detail and "concurrency 4:" in detail, detail
        assert "ITL" in detail and "start-up: process" in detail and "first_token" in detail, detail


def test_stability_table(main_run: MainRun) -> None:
    for model in PASSING:
        s = _cell(main_run, f"local/cpu/{model}").stability
        assert s is not None and s.requests == STABILITY_REQUESTS and s.errors == 0, s
        assert s.bursts == 3 and s.burst_size == 10
        assert s.latency_ms_p50 and s.latency_ms_p99 and s.latency_ms_p99 >= s.latency_ms_p50
        assert set(s.edge_cases) >= {"long_prompt", "empty_prompt", "unicode_prompt", "cancel", "healthy_after"}
        assert all(v == "ok" for v in s.edge_cases.values()), s.edge_cases
        assert s.rss_growth_bytes is not None
    md = (main_run.report_dir / "matrix.md").read_text()
    assert "## Stability" in md and "| `local/cpu/tiny-llama` | 10 | 3 × 10 | 0 |" in md


def test_verdicts_recorded_in_catalog(main_run: MainRun) -> None:
    cat = json.loads((main_run.state / "catalog.json").read_text())
    entries = {m["id"]: m for m in cat["models"]}
    llama = entries["tiny-llama"]
    assert llama["verdicts"]["cpu"]["verdict"] == "pass"
    assert llama["peak_memory"]["cpu"] > 50_000_000
    assert entries[CORRUPT_MODEL]["verdicts"]["cpu"]["verdict"] == "fail"
    assert "cuda" not in llama["verdicts"]  # skipped cells are not recorded


def test_no_worker_left_running(main_run: MainRun) -> None:
    assert worker_processes(main_run.state) == []
