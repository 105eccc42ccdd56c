"""The one definition of each benchmark figure (llorch_tui/bench_metrics.py), on hand-made timings."""

from __future__ import annotations

import pytest

from llorch_tui.bench_metrics import RequestTiming, level_summary, mean_sd, percentile, roofline_tps


def test_nearest_rank_percentiles() -> None:
    values = list(range(1, 1001))
    assert percentile(values, 99) == 990 and percentile(values, 50) == 500 and percentile(values, 100) == 1000
    assert percentile([3.0], 99) == 3.0 and percentile([], 50) == 0.0
    assert percentile([5, 1, 4, 2, 3], 90) == 5  # rank ceil(4.5) = 5: a sample, never an interpolation


def test_mean_and_sample_sd() -> None:
    assert mean_sd([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]) == pytest.approx((5.0, 2.138), abs=1e-3)
    assert mean_sd([3.0]) == (3.0, 0.0) and mean_sd([]) == (0.0, 0.0)


def test_request_and_level_figures() -> None:
    # sent at 0; chunks at 0.1, 0.15, 0.3 (ITL 50 and 150 ms); 3 tokens; done at 0.31
    a = RequestTiming(sent=0.0, chunks=[0.1, 0.15, 0.3], tokens=3, done=0.31)
    assert a.ttft_ms == pytest.approx(100) and a.tpot_ms == pytest.approx(100)
    assert a.itl_ms == pytest.approx([50, 150]) and a.decode_tps == pytest.approx(10)
    b = RequestTiming(sent=0.05, chunks=[0.25], tokens=1, done=0.41)
    assert b.tpot_ms is None and b.itl_ms == [] and b.decode_tps is None
    s = level_summary(2, [a, b])
    assert (s["concurrency"], s["requests"], s["tokens"]) == (2, 2, 4)
    assert s["throughput_tps"] == pytest.approx(4 / 0.41, rel=1e-3)
    assert s["ttft_ms_p50"] == pytest.approx(100) and s["ttft_ms_p99"] == pytest.approx(200)
    assert s["itl_ms_p50"] == pytest.approx(50) and s["itl_ms_p90"] == pytest.approx(150)


def test_roofline() -> None:
    assert roofline_tps(2 * 10**9, 4.8e12) == pytest.approx(2400)
    assert roofline_tps(0, 1e12) == 0.0
