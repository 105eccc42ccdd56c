"""The regression sentinel on hand-made runs: correctness drift always, performance only beyond the noise of
the cell's own samples, and the environment changes named."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from llorch_tui.matrix.reports import write_reports
from llorch_tui.matrix.reports.sentinel import cell_sentinel, perf_change
from llorch_tui.protocol.matrix import BenchResult, CellKey, CellResult, MatrixReport, RunSummary
from llorch_tui.protocol.parity import Divergence, EnvFingerprint, ParityResult

ENV = EnvFingerprint(python="3.11.2", torch="2.13.0", transformers="5.0.0", os="Linux", kernel="6.1", cpu="EPYC",
                     dtype="float32", model_sha256="a" * 64, llorch_version="0.1.0")


def _bench(samples: list[float]) -> BenchResult:
    return BenchResult(iterations=len(samples), max_tokens=16, tokens_per_second_mean=sum(samples) / len(samples),
                       tokens_per_second_p50=sorted(samples)[len(samples) // 2], ttft_ms_mean=5, ttft_ms_p50=5,
                       samples_tokens_per_second=samples)


def _cell(samples: list[float] | None = None, env: EnvFingerprint | None = ENV, parity: ParityResult | None = None,
          verdict: str = "pass", reason_code: str | None = None) -> CellResult:
    return CellResult(key=CellKey.parse("local/cpu/m"), verdict=verdict, reason_code=reason_code,  # type: ignore[arg-type]
                      bench=_bench(samples) if samples else None, environment=env, parity=parity)


def _parity(**kw: object) -> ParityResult:
    base: dict[str, object] = {"verdict": "pass", "tokens_agreed": 64, "tokens_total": 64, "max_logprob_delta": 0.002,
                               "perplexity_ratio": 1.0001, "golden_passed": 2, "golden_total": 2}
    return ParityResult.model_validate({**base, **kw})


def test_noise_rule() -> None:
    noisy = [100.0, 112.0, 91.0, 105.0, 97.0]
    assert perf_change(noisy, [x * 0.95 for x in noisy]).verdict == "within_noise"  # type: ignore[union-attr]
    slower = perf_change(noisy, [70.0, 72.0, 69.0, 71.0, 75.0])
    assert slower is not None and slower.verdict == "slower" and round(slower.change, 2) == -0.29
    steady = [100.0, 100.5, 99.5]
    assert perf_change(steady, [101.5, 102.0, 101.0]).verdict == "within_noise"  # type: ignore[union-attr]  # < 2 %
    assert perf_change(steady, [110.0, 110.4, 109.8]).verdict == "faster"  # type: ignore[union-attr]
    assert perf_change([100.0, 101.0], [50.0, 51.0, 52.0]) is None  # two samples say nothing about noise


def test_correctness_drift_is_reported_even_when_the_verdict_holds() -> None:
    s = cell_sentinel(_cell(parity=_parity()), _cell(parity=_parity(max_logprob_delta=0.04, perplexity_ratio=1.01)))
    assert s.correctness == ["max |Δ log-prob| 0.002 → 0.04", "perplexity ratio 1 → 1.01"] and s.flagged
    div = Divergence(prompt_id="p3", position=7, reference_token=" Paris", got_token=" Lyon", reference_margin=2.5)
    s = cell_sentinel(_cell(parity=_parity()), _cell(verdict="fail", reason_code="parity_drift", parity=_parity(
        verdict="parity_drift", tokens_agreed=40, first_divergence=div, weights_changed=True, golden_passed=1)))
    assert s.correctness[0] == "verdict pass → fail (parity_drift)"
    assert "parity pass → parity_drift" in s.correctness and "tokens agreed 64/64 → 40/64" in s.correctness
    assert "first divergence none → p3 token 7: ' Lyon' instead of ' Paris'" in s.correctness
    assert "golden 2/2 → 1/2" in s.correctness
    assert "the weights no longer match the reference fingerprint" in s.correctness
    assert s.performance is None and s.performance_note is None  # a failed cell has no speed to compare


def test_performance_needs_samples_and_the_environment_is_named() -> None:
    s = cell_sentinel(_cell(), _cell(env=ENV.model_copy(update={"torch": "2.14.0"})))
    assert s.performance is None and "--bench 3" in (s.performance_note or "")
    assert s.environment == ["torch 2.13.0 → 2.14.0"] and s.flagged
    quiet = cell_sentinel(_cell([100.0, 104.0, 96.0]), _cell([101.0, 97.0, 103.0]))
    assert quiet.performance is not None and quiet.performance.verdict == "within_noise" and not quiet.flagged


def _run(cell: CellResult, minute: int) -> MatrixReport:
    return MatrixReport(started_at=datetime(2026, 1, 1, 0, minute, tzinfo=timezone.utc), cells=[cell],
                        summary=RunSummary(passed=1))


def test_the_diff_reports_carry_the_sentinel(tmp_path: Path) -> None:
    write_reports(_run(_cell([100.0, 101.0, 99.0, 100.5]), 0), tmp_path)
    newer = ENV.model_copy(update={"torch": "2.14.0", "kernel": "6.8"})
    paths = write_reports(_run(_cell([80.0, 81.0, 79.5, 80.2], env=newer), 1), tmp_path)
    doc = json.loads(Path(paths["diff_json"]).read_text())
    (entry,) = doc["sentinel"]
    assert entry["performance"]["verdict"] == "slower" and entry["environment"] == ["torch 2.13.0 → 2.14.0",
                                                                                     "kernel 6.1 → 6.8"]
    for name in ("diff", "markdown"):
        text = Path(paths[name]).read_text()
        assert "Regression sentinel" in text
        line = next(l for l in text.splitlines() if l.startswith("* `local/cpu/m`"))
        assert "**performance slower**: 100.2 → 80.1 tokens/s (-20.1%, noise bound ±2.0%, 4/4 samples)" in line
        assert "**environment**: torch 2.13.0 → 2.14.0; kernel 6.1 → 6.8" in line


def test_cells_with_and_without_a_dtype_are_matched_by_the_dtype_they_ran_in(tmp_path: Path) -> None:
    from llorch_tui.matrix.reports.diff import diff_reports

    def cell(key: str, samples: list[float], verdict: str = "pass", dtype: str = "float32") -> CellResult:
        return _cell(samples, env=ENV.model_copy(update={"dtype": dtype}), verdict=verdict).model_copy(
            update={"key": CellKey.parse(key)})

    def run(minute: int, *cells: CellResult) -> MatrixReport:
        return _run(cells[0], minute).model_copy(update={"cells": list(cells)})

    plain = run(0, cell("local/cpu/m", [100.0, 101.0, 99.0, 100.5]))  # no --dtypes: the worker chose float32
    d = diff_reports(plain, run(1, cell("local/cpu:float32/m", [80.0, 81.0, 79.5, 80.2])))
    assert (d.added, d.not_run, d.changed, d.unchanged) == ([], [], [], 1)
    (entry,) = d.sentinel
    assert entry.key == "local/cpu:float32/m" and entry.performance and entry.performance.verdict == "slower"
    # the other way round, with a verdict change: the table names the baseline's id
    dtyped = run(2, cell("local/cpu:float32/m", [100.0, 101.0, 99.0]), cell("local/cpu:bfloat16/m", [90.0]))
    d = diff_reports(dtyped, run(3, cell("local/cpu/m", [100.0], verdict="fail")))
    assert [(c.key, c.before_key, c.before, c.after) for c in d.changed] == [
        ("local/cpu/m", "local/cpu:float32/m", "pass", "fail")]
    assert [c.key for c in d.not_run] == ["local/cpu:bfloat16/m"] and d.added == []
    write_reports(dtyped, tmp_path)
    paths = write_reports(run(3, cell("local/cpu/m", [100.0], verdict="fail")), tmp_path)
    assert "| `local/cpu/m` (was `local/cpu:float32/m`) | ✅ pass | ❌ fail |" in Path(paths["diff"]).read_text()
    # an exact id wins, and a cell whose worker ran in another dtype is another cell
    both = run(4, cell("local/cpu/m", [100.0]), cell("local/cpu:float32/m", [100.0]))
    d = diff_reports(plain, both)
    assert d.unchanged == 1 and [c.key for c in d.added] == ["local/cpu:float32/m"]
    d = diff_reports(plain, run(5, cell("local/cpu:bfloat16/m", [100.0], dtype="bfloat16")))
    assert [c.key for c in d.added] == ["local/cpu:bfloat16/m"] and [c.key for c in d.not_run] == ["local/cpu/m"]
