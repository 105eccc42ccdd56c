"""The report's benchmark-convention tables: llama-bench pp/tg rates, latency percentiles per
concurrency level, start-up stages (definitions: llorch_tui/bench_metrics.py)."""

from __future__ import annotations

from llorch_tui.protocol.matrix import MatrixReport

STAGES = ("process", "weights_to_ram", "to_device", "warmup")


def _table(title: str, headers: list[str], rows: list[list[str]]) -> list[str]:
    return [f"## {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def bench_convention_sections(report: MatrixReport) -> list[str]:
    cells = sorted((c for c in report.cells if c.bench and c.bench.pp_tps_mean is not None),
                   key=lambda c: c.key.id)
    if not cells:
        return []
    rates = [[f"`{c.key.id}`", f"pp{b.pp_tokens}", f"{b.pp_tps_mean:.1f} ± {b.pp_tps_sd or 0:.1f}",
              f"tg{b.tg_tokens}", f"{b.tg_tps_mean or 0:.1f} ± {b.tg_tps_sd or 0:.1f}", str(b.iterations)]
             for c in cells for b in (c.bench,) if b is not None]
    out = _table("Prompt processing and generation (llama-bench style, mean ± σ)",
                 ["Cell", "Test", "pp tok/s", "Test", "tg tok/s", "Reps"], rates)
    lat = [[f"`{c.key.id}`", str(lv.concurrency), str(lv.requests), f"{lv.throughput_tps:.1f}",
            f"{lv.ttft_ms_p50:.1f} / {lv.ttft_ms_p90:.1f} / {lv.ttft_ms_p99:.1f}",
            f"{lv.tpot_ms_p50:.1f} / {lv.tpot_ms_p90:.1f} / {lv.tpot_ms_p99:.1f}",
            f"{lv.itl_ms_p50:.1f} / {lv.itl_ms_p90:.1f} / {lv.itl_ms_p99:.1f}"]
           for c in cells for b in (c.bench,) if b is not None for lv in b.levels]
    if lat:
        out += _table("Latency per concurrency (ms, p50 / p90 / p99)",
                      ["Cell", "Concurrency", "Requests", "Throughput tok/s", "TTFT", "TPOT", "ITL"], lat)
    start = [[f"`{c.key.id}`", *(f"{b.startup[s]:.2f}" if s in b.startup else "–" for s in STAGES),
              f"{c.measurements.spawn_s:.2f}" if c.measurements.spawn_s is not None else "–",
              f"{c.measurements.ttft_ms / 1000:.3f}" if c.measurements.ttft_ms is not None else "–"]
             for c in cells for b in (c.bench,) if b is not None and b.startup]
    if start:
        out += _table("Start-up stages (s)", ["Cell", "Process/imports or fork", "Weights disk → RAM", "RAM → device",
                                              "Warm-up", "Spawn → ready", "First token"], start)
    return out
