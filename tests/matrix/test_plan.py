"""Planning rules (pure: no pool, no worker): which cells exist and why some are skipped."""

from __future__ import annotations

import argparse

from matrix_helpers import pool_status

from llorch_tui.config import MatrixConfig, PoolConfig
from llorch_tui.matrix.options import MatrixOptions
from llorch_tui.matrix.plan import ALL_MODELS, PoolFacts, plan_pool
from llorch_tui.protocol.catalog import Catalog, ModelEntry

GB = 1_000_000_000


def _entry(mid: str, **kw: object) -> ModelEntry:
    return ModelEntry.model_validate({"id": mid, "name": mid, "path": f"/m/{mid}", "architecture": "llama",
                                      "downloaded": True, **kw})


def _view(models: list[ModelEntry], usable: list[str], ram_free: int = 16 * GB, gpus: list[dict] | None = None,
          **pool: object) -> PoolFacts:
    return PoolFacts(PoolConfig(name="p", **pool), online=True, catalog=Catalog(pool_id="p", models=models),
                    status=pool_status(backends=usable, ram={"total": 32 * GB, "available": ram_free}, gpus=gpus))


def _by_key(cells):  # type: ignore[no-untyped-def]
    return {c.key.id: c for c in cells}


def test_absent_backends_are_planned_as_skipped() -> None:
    cells = _by_key(plan_pool(_view([_entry("a")], ["cpu"]), MatrixOptions()))
    assert list(cells) == ["p/cpu/a", "p/cuda/a", "p/metal/a"]
    assert not cells["p/cpu/a"].skipped
    assert cells["p/cuda/a"].skip_code == "backend_absent" and "cuda" in (cells["p/cuda/a"].skip_reason or "")


def test_model_lacking_backend_not_downloaded_and_not_in_catalog() -> None:
    view = _view([_entry("a", backends=["cpu"]), _entry("b", downloaded=False)], ["cpu", "cuda"])
    cells = _by_key(plan_pool(view, MatrixOptions(models=["a", "b", "zzz"], backends=["cpu", "cuda"])))
    assert cells["p/cuda/a"].skip_code == "backend_unsupported"
    assert cells["p/cpu/b"].skip_code == "not_downloaded" and "--download" in (cells["p/cpu/b"].skip_hint or "")
    assert cells["p/cpu/zzz"].skip_code == "not_in_catalog"
    with_download = _by_key(plan_pool(view, MatrixOptions(models=["b", "tinyllama"], backends=["cpu"], download=True),
                                      presets={"tinyllama"}))
    assert with_download["p/cpu/b"].needs_download and not with_download["p/cpu/b"].skipped
    assert with_download["p/cpu/tinyllama"].needs_register and with_download["p/cpu/tinyllama"].needs_download


def test_will_not_fit_uses_measured_peak_memory() -> None:
    big = _entry("big", peak_memory={"cpu": 10 * GB, "cuda": 30 * GB})
    gpus = [{"index": 0, "name": "A", "memory_total": 24 * GB, "memory_used": 2 * GB},
            {"index": 1, "name": "B", "memory_total": 48 * GB, "memory_used": 40 * GB}]
    cells = _by_key(plan_pool(_view([big], ["cpu", "cuda"], ram_free=8 * GB, gpus=gpus), MatrixOptions(backends=["cpu", "cuda"])))
    assert cells["p/cpu/big"].skip_code == "will_not_fit" and "9.3 GiB" in (cells["p/cpu/big"].skip_reason or "")
    assert cells["p/cuda/big"].skip_code == "will_not_fit"  # best GPU has 22 GB free
    roomy = _by_key(plan_pool(_view([big], ["cpu"], ram_free=12 * GB), MatrixOptions(backends=["cpu"])))
    assert not roomy["p/cpu/big"].skipped


def test_offline_pool_and_pool_restriction() -> None:
    off = PoolFacts(PoolConfig(name="p"), online=False, error="connection refused")
    cells = plan_pool(off, MatrixOptions(backends=["cpu"]))
    assert [c.key.model for c in cells] == [ALL_MODELS]
    assert cells[0].skip_code == "pool_offline" and "connection refused" in (cells[0].skip_reason or "")
    restricted = plan_pool(_view([_entry("a")], ["cpu", "cuda"], backends=["cuda"]), MatrixOptions())
    assert [c.key.backend for c in restricted] == ["cuda"]


def test_gpu_slots_follow_the_pool_gpus() -> None:
    view = _view([], ["cuda"], gpus=[{"index": 0, "memory_total": GB}, {"index": 1, "memory_total": GB}])
    assert view.gpu_indices("cuda") == [0, 1] and view.gpu_indices("cpu") == [None]


def test_flags_override_config() -> None:
    cfg = MatrixConfig(models=["a"], backends=["cpu"], report_dir="r", max_tokens=5)
    args = argparse.Namespace(models=None, backends=["cuda"], pools=["x"], report_dir="out", download=True, bench=3,
                              stability=False, stability_requests=1000)
    o = MatrixOptions.from_config(cfg, args)
    assert (o.models, o.backends, o.pools, o.report_dir, o.download, o.bench, o.max_tokens) == (
        ["a"], ["cuda"], ["x"], "out", True, 3, 5)
