"""The Markdown report: the model-support matrix (rows models, columns pool/backend) with a footnote
per failure or skip reason, then measurements, benchmarks, stability and the diff."""

from __future__ import annotations

from llorch_tui.matrix.reports.bench_tables import bench_convention_sections
from llorch_tui.matrix.classify import DRIFT_CODES
from llorch_tui.matrix.reports.certificates import environment_section, parity_section
from llorch_tui.matrix.reports.diff import MatrixDiff, diff_markdown
from llorch_tui.protocol.matrix import CellResult, MatrixReport
from llorch_tui.units import fmt_bytes

ICONS = {"pass": "✅", "fail": "❌", "skipped": "⏭"}
DRIFT_ICON = "⚠️"


def _esc(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ").strip()


def _num(v: float | int | None, fmt: str = "{:.1f}") -> str:
    return "—" if v is None else fmt.format(v)


def _columns(report: MatrixReport) -> list[str]:
    cols: list[str] = []
    for c in report.cells:
        if c.key.column not in cols:
            cols.append(c.key.column)
    return cols


def _rows(report: MatrixReport) -> list[str]:
    rows: list[str] = []
    for c in report.cells:
        if c.key.model not in rows:
            rows.append(c.key.model)
    return rows


def matrix_table(report: MatrixReport) -> tuple[list[str], list[str]]:
    """(table lines, footnote lines). Identical reasons share one footnote."""
    cols, rows = _columns(report), _rows(report)
    by = {(c.key.model, c.key.column): c for c in report.cells}
    notes: dict[str, int] = {}

    def note(c: CellResult) -> str:
        text = f"{c.reason_code}: {c.reason or ''}" + (f" (exit code {c.exit_code})" if c.exit_code is not None else "")
        if c.verdict == "fail":  # failures name their cell: they are what a reader looks for
            text = f"`{c.key.id}` — {text}"
        n = notes.setdefault(text, len(notes) + 1)
        return f"[{n}]"

    lines = ["| Model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for model in rows:
        cells = []
        for col in cols:
            c = by.get((model, col))
            if c is None:
                cells.append("")
            elif c.reason_code in DRIFT_CODES:  # runs, but answers unlike its reference: not a broken worker
                cells.append(f"{DRIFT_ICON} {c.reason_code} {note(c)}")
            elif c.verdict == "pass":
                tps = c.bench.tokens_per_second_mean if c.bench else c.measurements.tokens_per_second
                cells.append(f"✅ {tps:.1f} tok/s" if tps is not None else "✅")
            else:
                cells.append(f"{ICONS[c.verdict]} {note(c)}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    foot = [f"{n}. {_esc(text)}" for text, n in notes.items()]
    return lines, foot


def _section(title: str, headers: list[str], rows: list[list[str]]) -> list[str]:
    """A titled Markdown table: every report section below has this shape."""
    return [f"## {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(row) + " |" for row in rows)]


def _measurements(report: MatrixReport) -> list[str]:
    ran = [c for c in report.cells if c.verdict != "skipped" or c.measurements.spawn_s is not None]
    if not ran:
        return []
    rows = [[f"`{c.key.id}`", ICONS[c.verdict], _num(m.load_s, "{:.2f}"), _num(m.ttft_ms), _num(m.tokens_per_second),
             _num(m.tokens_generated, "{}"), fmt_bytes(m.peak_rss_bytes), fmt_bytes(m.device_peak_bytes),
             _num(m.cell_s, "{:.2f}"), _num(m.overhead_s, "{:.3f}")]
            for c in ran for m in (c.measurements,)]
    return _section("Measurements", ["Cell", "Verdict", "Load s", "TTFT ms", "tok/s", "Tokens", "Peak RSS",
                                     "Device peak", "Cell s", "Overhead s"], rows) + [""]


def _fit(report: MatrixReport) -> list[str]:
    """`models fit`'s estimate (asked before the run) beside what the run measured: how far to trust it."""
    rows = [[f"`{c.key.id}`", fmt_bytes(est), fmt_bytes(peak), f"{est / peak:.2f}"]
            for c in report.cells
            for est, peak in ((c.measurements.fit_estimate_bytes, c.measurements.peak_bytes(c.key.backend)),)
            if est and peak]
    return _section("Fit: estimate vs measured", ["Cell", "Estimate", "Measured peak", "Estimate ÷ measured"],
                    rows) + [""] if rows else []


def _bench(report: MatrixReport) -> list[str]:
    cells = sorted((c for c in report.cells if c.bench), key=lambda c: (c.key.model, c.key.column))
    if not cells:
        return []
    rows = [[c.key.model, c.key.column, f"{b.iterations} × {b.max_tokens}", f"{b.tokens_per_second_mean:.1f}",
             f"{b.tokens_per_second_p50:.1f}", f"{b.ttft_ms_mean:.1f}", f"{b.ttft_ms_p50:.1f}",
             fmt_bytes(b.peak_rss_bytes), fmt_bytes(b.device_peak_bytes)]
            for c in cells for b in (c.bench,) if b is not None]
    return _section("Performance benchmarks", ["Model", "Pool/backend", "Iterations × tokens", "tok/s mean",
                                               "tok/s p50", "TTFT ms mean", "TTFT ms p50", "Peak RSS",
                                               "Device peak"], rows) + [""]


def _stability(report: MatrixReport) -> list[str]:
    cells = [c for c in report.cells if c.stability]
    if not cells:
        return []
    rows = [[f"`{c.key.id}`", str(s.requests), f"{s.bursts} × {s.burst_size}", str(s.errors), _num(s.latency_ms_p50),
             _num(s.latency_ms_p99), fmt_bytes(s.rss_start_bytes), fmt_bytes(s.rss_end_bytes),
             fmt_bytes(s.rss_growth_bytes),
             ", ".join(f"{k} {'✅' if v == 'ok' else '❌'}" for k, v in s.edge_cases.items())]
            for c in cells for s in (c.stability,) if s is not None]
    out = _section("Stability", ["Cell", "Requests", "Bursts", "Errors", "Latency p50 ms", "Latency p99 ms",
                                 "RSS start", "RSS end", "RSS growth", "Edge cases"], rows)
    errs = [(c.key.id, e) for c in cells for e in (c.stability.error_samples if c.stability else [])]
    if errs:
        out += ["", "Errors seen:", *[f"* `{k}`: {_esc(e)}" for k, e in errs]]
    return out + [""]


def _failures(report: MatrixReport) -> list[str]:
    failed = [c for c in report.cells if c.verdict == "fail"]
    if not failed:
        return []
    out = ["## Failures", ""]
    for c in failed:
        out += [f"### `{c.key.id}` — {c.reason_code}", "", _esc(c.reason)]
        if c.hint:
            out.append(f"\nHint: {_esc(c.hint)}")
        if c.log_tail:
            out += ["", "```", *c.log_tail[-20:], "```"]
        out.append("")
    return out


def markdown_report(report: MatrixReport, diff: MatrixDiff | None = None, title: str = "Model support matrix") -> str:
    s = report.summary
    cmd = report.options.get("command") or "llorch-tui --run-matrix"
    out = [f"# {title}", "",
           f"_Produced by `{cmd}` on {report.started_at:%Y-%m-%d %H:%M} UTC (llorch {report.llorch_version}) "
           f"in {s.duration_s:.1f} s: {s.passed} passed, {s.failed} failed, {s.skipped} skipped._", ""]
    if report.partial:
        out += ["**Partial run**: it was stopped (or exported while running) before every cell ran. It is not the "
                "baseline: the next run is compared with the last whole one.", ""]
    for p in report.pools:
        state = "online" if p.online else f"offline ({_esc(p.error)})"
        extra = f", GPUs: {', '.join(p.gpus)}" if p.gpus else ""
        out.append(f"* pool **{p.name}** {state}: host {p.hostname or '?'}, usable backends "
                   f"{', '.join(p.backends) or 'none'}, RAM {fmt_bytes(p.ram_total_bytes)}{extra}")
    table, foot = matrix_table(report)
    out += ["", *table, "", "✅ pass (tokens/s of the first seeded generation; bench mean with --bench) · ❌ fail · "
            f"{DRIFT_ICON} runs but drifted from its reference (parity_drift, wrong_answer) · ⏭ skipped", ""]
    if foot:
        out += ["Notes:", "", *foot, ""]
    out += parity_section(report) + _measurements(report) + _fit(report) + _bench(report) + bench_convention_sections(report)
    out += _stability(report)
    out += environment_section(report) + _failures(report)
    if diff is not None:
        out.append(diff_markdown(diff))
    out.append(s.line)
    return "\n".join(out).rstrip() + "\n"
