"""The comparison rules on hand-made steps (ties, real divergences, missing alternatives, the free
run), golden matching, tolerances, the shipped suites and the weights hash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llorch_tui.errors import LlorchError
from llorch_tui.parity.compare import compare_prompt, env_moves, golden_ok
from llorch_tui.parity.suite import GoldenPrompt, golden_suite, perplexity_text, prompt_suite
from llorch_tui.parity.tolerances import TOLERANCES, for_dtype
from llorch_tui.pool.weights_hash import weights_sha256
from llorch_tui.protocol.parity import EnvFingerprint, FingerprintPrompt, FingerprintStep, TopLogprob

F32 = TOLERANCES["float32"]


def step(top: list[tuple[int, float]], chosen: int | None = None, names: dict[int, str] | None = None) -> FingerprintStep:
    """A step whose chosen token is `chosen` (default: the best of `top`)."""
    tid = top[0][0] if chosen is None else chosen
    lp = dict(top).get(tid, -30.0)
    return FingerprintStep(token_id=tid, text=f"t{tid}", logprob=lp,
                           top=[TopLogprob(token_id=i, logprob=v, text=(names or {}).get(i, f"t{i}")) for i, v in top])


def ref_prompt(steps: list[FingerprintStep]) -> FingerprintPrompt:
    return FingerprintPrompt(prompt_id="p", prompt="x", prompt_token_ids=[1, 2], steps=steps)


REF = [step([(10, -0.1), (11, -2.5), (12, -3.0)]),      # clear winner (margin 2.4)
       step([(20, -0.70), (21, -0.71), (22, -4.0)]),    # near tie (margin 0.01)
       step([(30, -0.2), (31, -1.9), (32, -3.3)])]


def test_identical_numbers_agree_everywhere() -> None:
    c = compare_prompt(ref_prompt(REF), free=list(REF), forced=list(REF), tol=F32)
    assert (c.agreed, c.tied, c.total, c.max_delta) == (3, 0, 3, 0.0)
    assert c.divergence is None and c.failure is None and c.free_divergence is None


def test_a_near_tie_is_not_a_failure_and_comparison_goes_on() -> None:
    forced = [REF[0], step([(21, -0.69), (20, -0.705), (22, -4.0)], chosen=20), REF[2]]
    c = compare_prompt(ref_prompt(REF), free=[], forced=forced, tol=F32)
    assert c.failure is None and c.tied == 1 and c.agreed == 2
    assert c.divergence is not None and c.divergence.tie and c.divergence.position == 1
    assert (c.divergence.reference_token, c.divergence.got_token) == ("t20", "t21")
    assert c.max_delta == pytest.approx(0.02, abs=1e-9)  # 21: -0.71 -> -0.69


def test_a_clear_divergence_fails_and_names_both_tokens() -> None:
    forced = [step([(11, -0.3), (10, -0.9)], chosen=10, names={11: " Lyon"}), REF[1], REF[2]]
    c = compare_prompt(ref_prompt(REF), free=[], forced=forced, tol=F32)
    assert c.failure is not None and not c.failure.tie
    assert (c.failure.position, c.failure.reference_token, c.failure.got_token) == (0, "t10", " Lyon")
    assert c.failure.reference_margin == pytest.approx(2.4)
    # 11 moved from -2.5 to -0.3; 12 is not in the cell's top: it counts with what it must differ by at least
    assert c.max_delta == pytest.approx(2.2)


def test_missing_alternative_counts_with_its_lower_bound() -> None:
    forced = [step([(10, -0.1), (11, -2.5), (99, -2.6)]), REF[1], REF[2]]  # 12 (-3.0 in the ref) fell out
    c = compare_prompt(ref_prompt(REF), free=[], forced=forced, tol=F32)
    assert c.max_delta == 0.0  # -3.0 is below the cell's floor -2.6: it may be unchanged
    forced = [step([(10, -0.1), (11, -2.5), (99, -2.9)]), REF[1], REF[2]]
    assert compare_prompt(ref_prompt(REF), free=[], forced=[*forced], tol=F32).max_delta == 0.0
    forced = [step([(10, -0.05), (98, -1.0), (99, -1.5)]), REF[1], REF[2]]  # 11 and 12 both gone, floor -1.5
    assert compare_prompt(ref_prompt(REF), free=[], forced=forced, tol=F32).max_delta == pytest.approx(0.05)


def test_free_run_departure_is_reported_and_its_numbers_count() -> None:
    free = [REF[0], step([(21, -0.69), (20, -0.70)], chosen=21), step([(5, -0.1)])]
    c = compare_prompt(ref_prompt(REF), free=free, forced=list(REF), tol=F32)
    assert c.failure is None and c.free_divergence is not None
    assert (c.free_divergence.position, c.free_divergence.got_token, c.free_divergence.tie) == (1, "t21", True)
    assert c.max_delta == pytest.approx(0.02)  # the step where it departed is compared, the ones after are not


def test_golden_matching() -> None:
    g = GoldenPrompt(id="x", question="What is 2+2?", expected="4")
    assert golden_ok("The answer to this classic math problem is 4.", g)
    assert not golden_ok("It is 14.", g) and not golden_ok("4th", g)
    assert golden_ok("PARIS!", GoldenPrompt(id="p", question="q", expected="Paris"))
    exact = GoldenPrompt(id="e", question="q", expected="Paris", mode="exact")
    assert golden_ok(" paris. ", exact) and not golden_ok("Paris, France", exact)


def test_tolerances_by_dtype() -> None:
    f32, bf16, f16 = for_dtype("float32"), for_dtype("bfloat16"), for_dtype("float16")
    assert f32.max_logprob_delta < f16.max_logprob_delta < bf16.max_logprob_delta
    assert f32.tie_margin < bf16.tie_margin and f32.perplexity_ratio < bf16.perplexity_ratio
    assert for_dtype("int4-someday") == bf16 and for_dtype(None) == f32
    assert set(f32.as_dict()) == {"max_logprob_delta", "tie_margin", "perplexity_ratio"}


def test_shipped_suites() -> None:
    ps = prompt_suite()
    assert ps.version == "prompts-v1" and ps.max_tokens >= 32 and ps.top_k >= 5
    assert any(p.messages for p in ps.prompts) and any(p.prompt for p in ps.prompts)
    assert len({p.id for p in ps.prompts}) == len(ps.prompts)
    gs = golden_suite()
    assert {g.expected for g in gs.prompts} >= {"Paris", "4"}
    assert len(perplexity_text().split()) > 100
    with pytest.raises(LlorchError) as err:
        prompt_suite("prompts-v999")
    assert err.value.code == "not_found" and "--accept" in (err.value.hint or "")


def test_weights_hash_follows_the_bytes(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    w = d / "model.safetensors"
    w.write_bytes(b"\0" * 4096)
    first = weights_sha256(d)
    (d / "config.json").write_text('{"changed": true}')  # not a weight file
    assert weights_sha256(d) == first
    st = w.stat()
    with w.open("r+b") as fh:  # one byte of one tensor, same size
        fh.seek(100)
        fh.write(b"\1")
    # the write moves mtime; pinned here because file-system timestamps are coarser than this test
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert weights_sha256(d) != first
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF")
    assert weights_sha256(gguf) != weights_sha256(d)
    with pytest.raises(LlorchError) as err:
        weights_sha256(tmp_path / "empty-dir-that-is-missing")
    assert err.value.code == "not_downloaded"


def test_drift_evidence_names_what_moved_since_the_reference() -> None:
    ref = EnvFingerprint(torch="2.13.0", transformers="5.24.0", dtype="float32", python="3.11.7")
    now = EnvFingerprint(torch="2.14.0", transformers="5.24.0", dtype="bfloat16", python=None)
    assert env_moves(ref, now) == ["torch 2.13.0 → 2.14.0", "dtype float32 → bfloat16"]
    assert env_moves(None, now) == []
