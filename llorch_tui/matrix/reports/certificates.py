"""What a cell's correctness certificate and environment say, in words and tables: the "Parity" and
"Environment" sections of matrix.md, the JUnit properties and the TUI's cell detail share these."""

from __future__ import annotations

from llorch_tui.protocol.matrix import CellResult, MatrixReport
from llorch_tui.protocol.parity import Divergence, EnvFingerprint, ParityResult

PARITY_ICONS = {"pass": "✅ pass", "parity_drift": "⚠️ drift", "wrong_answer": "⚠️ wrong answer",
                "no_reference": "— no reference"}


def _esc(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ").strip()


def divergence_text(d: Divergence | None) -> str:
    if d is None:
        return "none"
    text = (f"{d.prompt_id} token {d.position}: {d.got_token!r} instead of {d.reference_token!r} "
            f"(reference margin {d.reference_margin:.3g})")
    return text + (", a tie" if d.tie else "")


def tokens_text(p: ParityResult) -> str:
    """"126/128 (2 ties)": agreed counts tokens within the tie margin, which the ties say."""
    if not p.tokens_total:
        return "—"
    return f"{p.tokens_agreed}/{p.tokens_total}" + (f" ({_ties(p)})" if p.tokens_tied else "")


def _ties(p: ParityResult) -> str:
    return f"{p.tokens_tied} tie" + ("" if p.tokens_tied == 1 else "s")


def golden_text(p: ParityResult) -> str:
    if p.golden_total:
        failed = [g.prompt_id for g in p.golden if not g.ok]
        return f"{p.golden_passed}/{p.golden_total}" + (f" (failed: {', '.join(failed)})" if failed else "")
    return f"skipped: {p.golden_skipped_reason}" if p.golden_skipped_reason else "—"


def _num(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def parity_figures(p: ParityResult) -> list[tuple[str, str]]:
    """(label, value) pairs, in reading order; the same figures everywhere the certificate is shown."""
    out = [("parity", PARITY_ICONS.get(p.verdict, p.verdict) + (f" — {p.reason}" if p.reason else "")),
           ("tokens agreed", tokens_text(p)),
           ("first divergence", divergence_text(p.first_divergence))]
    if p.first_free_divergence is not None:
        out.append(("free-text divergence", divergence_text(p.first_free_divergence)))
    out += [("max |Δ log-prob|", _num(p.max_logprob_delta, ".4g")),
            ("perplexity ratio", _num(p.perplexity_ratio, ".4f")),
            ("golden", golden_text(p))]
    if p.weights_changed:
        out.append(("weights", "changed since the reference was recorded"
                               + (f" (now sha256 {p.weights_sha256[:12]})" if p.weights_sha256 else "")))
    return out


def parity_brief(p: ParityResult) -> str:
    """One line for the headless runner: "parity pass 128/128 tokens, max Δ 0.0004, ppl ×1.0000, golden 2/2"."""
    parts = [f"parity {p.verdict}"]
    if p.tokens_total:
        parts.append(f"{p.tokens_agreed}/{p.tokens_total} tokens" + (f" ({_ties(p)})" if p.tokens_tied else ""))
    if p.max_logprob_delta is not None:
        parts.append(f"max Δ {p.max_logprob_delta:.4g}")
    if p.perplexity_ratio is not None:
        parts.append(f"ppl ×{p.perplexity_ratio:.4f}")
    if p.golden_total:
        parts.append(f"golden {p.golden_passed}/{p.golden_total}")
    if p.weights_changed:
        parts.append("weights changed")
    return parts[0] + (" " + ", ".join(parts[1:]) if len(parts) > 1 else "")


def environment_figures(env: EnvFingerprint) -> list[tuple[str, str]]:
    labels = (("llorch", env.llorch_version), ("worker", env.worker_version), ("Python", env.python),
              ("torch", env.torch), ("transformers", env.transformers), ("OS", env.os), ("kernel", env.kernel),
              ("CPU", env.cpu), ("GPU", env.gpu), ("driver", env.driver), ("CUDA", env.cuda), ("dtype", env.dtype),
              ("weights sha256", env.model_sha256[:12] if env.model_sha256 else None),
              ("fault injection", env.faults if env.faults and env.faults != "none" else None))
    return [(k, v) for k, v in labels if v]


def _sorted(cells: list[CellResult]) -> list[CellResult]:
    return sorted(cells, key=lambda c: (c.key.model, c.key.column))


def parity_section(report: MatrixReport) -> list[str]:
    """## Parity: per model × pool/backend/dtype, the certificate's figures; then the tolerances applied."""
    cells = _sorted([c for c in report.cells if c.parity is not None])
    if not cells:
        return []
    out = ["## Parity", "",
           "Each cell against its model's reference fingerprint (greedy tokens, top-k log-probs and perplexity "
           "recorded on cpu float32).", "",
           "| Model | Pool/backend/dtype | Parity | Tokens agreed | First divergence | Max \\|Δ log-prob\\| "
           "| Perplexity ratio | Golden |", "|---|---|---|---|---|---|---|---|"]
    for c in cells:
        p = c.parity
        assert p is not None
        f = dict(parity_figures(p))
        verdict = PARITY_ICONS.get(p.verdict, p.verdict) + (" · weights changed" if p.weights_changed else "")
        # What the worker reported computing in first: the certificate's own field has a default.
        dtype = (c.environment.dtype if c.environment else None) or p.dtype or c.key.dtype
        out.append(f"| {c.key.model} | {c.key.pool}/{c.key.backend}/{dtype} | {verdict} | {f['tokens agreed']} | "
                   f"{_esc(f['first divergence'])} | {f['max |Δ log-prob|']} | {f['perplexity ratio']} | "
                   f"{_esc(f['golden'])} |")
    tolerances: dict[str, dict[str, float]] = {}
    for c in cells:
        if c.parity and c.parity.tolerances:
            tolerances.setdefault(c.parity.dtype, c.parity.tolerances)
    if tolerances:
        out += ["", "Tolerances applied: " + "; ".join(
            f"{dt}: " + ", ".join(f"{k} {v:g}" for k, v in sorted(t.items())) for dt, t in sorted(tolerances.items()))]
    return out + [""]


def environment_section(report: MatrixReport) -> list[str]:
    """## Environment: one row per distinct environment, with the cells that ran in it."""
    groups: dict[str, tuple[EnvFingerprint, list[str]]] = {}
    for c in report.cells:
        if c.environment is None:
            continue
        # The weights hash differs per model by nature: grouping ignores it (it is in matrix.json per cell).
        env = c.environment.model_copy(update={"model_sha256": None})
        groups.setdefault(env.model_dump_json(), (env, []))[1].append(c.key.column)
    if not groups:
        return []
    out = ["## Environment", "", "| Cells | Software | Hardware |", "|---|---|---|"]
    for env, columns in groups.values():
        f = dict(environment_figures(env))
        soft = ", ".join(f"{k} {f[k]}" for k in ("llorch", "Python", "torch", "transformers", "CUDA", "dtype",
                                                 "fault injection") if k in f)
        if f.get("kernel") and f["kernel"] in f.get("OS", ""):
            del f["kernel"]  # Linux's OS string already names it
        hard = ", ".join(f"{k} {f[k]}" for k in ("OS", "kernel", "CPU", "GPU", "driver") if k in f)
        out.append(f"| {', '.join(f'`{c}`' for c in dict.fromkeys(columns))} | {_esc(soft)} | {_esc(hard)} |")
    return out + [""]


def junit_properties(c: CellResult) -> list[tuple[str, str]]:
    """name/value pairs for a testcase's <properties>: the dtype, the certificate's figures, the environment."""
    dtype = (c.environment.dtype if c.environment else None) or c.key.dtype
    props: list[tuple[str, str]] = [("dtype", dtype)]
    p = c.parity
    if p is not None:
        props += [("parity.verdict", p.verdict), ("parity.tokens_agreed", str(p.tokens_agreed)),
                  ("parity.tokens_total", str(p.tokens_total)), ("parity.tokens_tied", str(p.tokens_tied))]
        if p.first_divergence is not None:
            props.append(("parity.first_divergence", divergence_text(p.first_divergence)))
        if p.first_free_divergence is not None:
            props.append(("parity.first_free_divergence", divergence_text(p.first_free_divergence)))
        for name in ("max_logprob_delta", "perplexity", "perplexity_ratio"):
            v = getattr(p, name)
            if v is not None:
                props.append((f"parity.{name}", f"{v:.6g}"))
        props += [("parity.golden_passed", str(p.golden_passed)), ("parity.golden_total", str(p.golden_total)),
                  ("parity.weights_changed", str(p.weights_changed).lower())]
        props += [(f"parity.tolerance.{k}", f"{v:g}") for k, v in sorted(p.tolerances.items())]
    if c.environment is not None:
        props += [(f"env.{k}", str(v)) for k, v in c.environment.model_dump(exclude_none=True).items()]
    return props
