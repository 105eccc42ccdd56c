"""The headless matrix over a real SSH pool (OpenSSH sshd in a network namespace, tests/ssh's SshdEnv):
the engine sees only a PoolClient, so spawn, probes (through the forwarded port) and stop go over SSH."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator

import pytest
from matrix_helpers import run_headless, worker_processes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ssh"))

from llorch_tui.protocol.matrix import MatrixReport  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.ssh]


@pytest.fixture(scope="module")
def sshd() -> Iterator[object]:
    from sshd_mirror import sshd_pools

    yield from sshd_pools(("a",))


def test_headless_matrix_over_ssh(sshd, synth_models: dict[str, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import tomli_w

    from llorch_tui.paths import PoolPaths
    from llorch_tui.pool.catalog_store import CatalogStore
    from llorch_tui.protocol.catalog import Catalog

    from matrix_helpers import shared_synth_entry

    synth_entry = shared_synth_entry()

    kw = sshd.pool_kwargs("a")
    state = Path(str(kw["state_dir"]))
    CatalogStore(PoolPaths(state), "a").save(Catalog.model_validate(
        {"pool_id": "a", "models": [synth_entry("tiny-qwen2", "qwen2", synth_models["qwen2"])]}))
    config = tmp_path / "config.toml"
    config.write_text(tomli_w.dumps({"pools": [{k: v for k, v in kw.items() if v is not None}],
                                     "matrix": {"report_dir": str(tmp_path / "reports"), "max_tokens": 8}}))
    run = run_headless(config, "--backends", "cpu")
    assert run.rc == 0, run.stderr_lines[-20:]
    assert run.stdout_lines[0].startswith("PASS  a/cpu/tiny-qwen2  ")
    assert run.stdout_lines[-1] == "Test Results: 1 passed, 0 failed, 0 skipped"
    report = MatrixReport.model_validate_json((tmp_path / "reports" / "matrix.json").read_text())
    cell = report.cells[0]
    assert cell.measurements.tokens_per_second and cell.measurements.peak_rss_bytes
    assert report.pools[0].online and report.pools[0].backends == ["cpu"]
    assert worker_processes(state) == []
    assert json.loads((state / "workers.json").read_text())["workers"][0]["state"] == "stopped"
