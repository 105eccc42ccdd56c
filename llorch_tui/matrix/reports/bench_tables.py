"""The report's benchmark-convention figures: llama-bench pp/tg rates, latency percentiles per
concurrency level, start-up stages (definitions: llorch_tui/bench_metrics.py), as matrix.md
tables, JUnit properties (`bench.*`) and the TUI's cell detail."""

from __future__ import annotations

from llorch_tui.protocol.matrix import CellResult, MatrixReport

STAGES = ("process", "weights_to_ram", "to_device", "warmup")
LEVEL_FIGURES = ("requests", "tokens", "throughput_tps", *(f"{m}_ms_p{q}" for m in ("ttft", "tpot", "itl")
                                                         for q in (50, 90, 99)))


def _num(v: float | int) -> str:
    return str(v)  # Python's shortest repr: exactly the figure in matrix.json


def startup_stages(c: CellResult) -> dict[str, float]:
    """The cell's start-up stages (s): the worker's own, then `ready` (spawn → ready as the control
    plane waited for it) and `first_token` (the first probe's TTFT)."""
    out = {s: c.bench.startup[s] for s in STAGES if c.bench is not None and s in c.bench.startup}
    if c.measurements.spawn_s is not None:
        out["ready"] = c.measurements.spawn_s
    if c.measurements.ttft_ms is not None:
        out["first_token"] = round(c.measurements.ttft_ms / 1000, 4)
    return out


def bench_properties(c: CellResult) -> list[tuple[str, str]]:
    """JUnit <properties> of a cell's --bench: bench.pp_*/tg_*, bench.c<N>.<figure> per concurrency
    level, bench.startup.<stage>; none without --bench."""
    b = c.bench
    if b is None:
        return []
    props = [(f"bench.{name}", _num(v)) for name in ("pp_tokens", "pp_tps_mean", "pp_tps_sd", "tg_tokens",
                                                      "tg_tps_mean", "tg_tps_sd")
             if (v := getattr(b, name)) is not None]
    props += [(f"bench.c{lv.concurrency}.{name}", _num(getattr(lv, name))) for lv in b.levels for name in LEVEL_FIGURES]
    props += [(f"bench.startup.{stage}", _num(v)) for stage, v in startup_stages(c).items()]
    return props


def bench_detail(c: CellResult) -> list[str]:
    """The same figures in words, one line each (the TUI's cell detail)."""
    b = c.bench
    if b is None or b.pp_tps_mean is None:
        return []
    lines = [f"pp{b.pp_tokens} {b.pp_tps_mean:.1f} ± {b.pp_tps_sd or 0:.1f} tok/s · "
             f"tg{b.tg_tokens} {b.tg_tps_mean or 0:.1f} ± {b.tg_tps_sd or 0:.1f} tok/s ({b.iterations} reps)"]
    lines += [f"concurrency {lv.concurrency}: {lv.throughput_tps:.1f} tok/s · TTFT {lv.ttft_ms_p50:.1f}/"
              f"{lv.ttft_ms_p90:.1f}/{lv.ttft_ms_p99:.1f} · TPOT {lv.tpot_ms_p50:.1f}/{lv.tpot_ms_p90:.1f}/"
              f"{lv.tpot_ms_p99:.1f} · ITL {lv.itl_ms_p50:.1f}/{lv.itl_ms_p90:.1f}/{lv.itl_ms_p99:.1f} ms "
              "(p50/p90/p99)" for lv in b.levels]
    stages = startup_stages(c)
    if stages:
        lines.append("start-up: " + " · ".join(f"{k} {v:.2f} s" for k, v in stages.items()))
    return lines


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
    start = [[f"`{c.key.id}`", *(f"{st[s]:.2f}" if s in st else "–" for s in STAGES),
              f"{st['ready']:.2f}" if "ready" in st else "–", f"{st['first_token']:.3f}" if "first_token" in st else "–"]
             for c in cells if c.bench is not None and c.bench.startup for st in (startup_stages(c),)]
    if start:
        out += _table("Start-up stages (s)", ["Cell", "Process/imports or fork", "Weights disk → RAM", "RAM → device",
                                              "Warm-up", "Spawn → ready", "First token"], start)
    return out
