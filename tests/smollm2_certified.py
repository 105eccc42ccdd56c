"""One certified run of the real SmolLM2-135M-Instruct, shared by the tests that only read it (tests/matrix,
tests/parity): the headless matrix (`llorch-tui --run-matrix`, a real subprocess) in float32 then bfloat16 on
cpu. The float32 cell records the reference fingerprint, and both cells are certified against it. Each cell
loads the model and runs the whole parity suite, so this is made once per session (the `smollm2_certified`
fixture in tests/conftest.py); tests that change weights or reports work on `private_copy()`."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent / "matrix"))

from matrix_helpers import HeadlessRun, run_headless, write_config  # noqa: E402

from llorch_tui.paths import PoolPaths  # noqa: E402
from llorch_tui.pool.catalog_store import CatalogStore  # noqa: E402
from llorch_tui.protocol.matrix import CellResult, MatrixReport  # noqa: E402

F32, BF16 = "local/cpu:float32/smollm2", "local/cpu:bfloat16/smollm2"


def _own_links(shared: Path, own: Path) -> Path:
    """A model folder of links to the shared read-only checkpoint: a test replaces a link, never the shared file."""
    own.mkdir(parents=True, exist_ok=True)
    for f in shared.iterdir():
        (own / f.name).symlink_to(f)
    return own


def _point_at(state: Path, model_dir: Path) -> None:
    store = CatalogStore(PoolPaths(state), "local")
    with store.edit() as catalog:
        store.require(catalog, "smollm2").path = str(model_dir)


@dataclass(frozen=True)
class Smollm2Certified:
    state: Path                      # the pool that ran it: its catalog holds the recorded reference
    model_dir: Path                  # that pool's model folder (links to the shared checkpoint)
    reports: Path                    # the reports as the run left them
    run: HeadlessRun                 # exit code, cell lines (stdout), stage lines (stderr)
    results: dict[str, CellResult]   # by cell id, as matrix.json has them

    def private_copy(self, make_pool: Callable[[], Path], root: Path) -> tuple[Path, Path, Path]:
        """(state, model folder, reports) of a fresh pool that a test may change: the same reference
        fingerprint, its own links to the weights, a copy of the reports (so a later run diffs against this one)."""
        state = make_pool()
        own = _own_links(Path(CatalogStore(PoolPaths(state), "local").get("smollm2").path), root / "model")
        _point_at(state, own)
        reference = CatalogStore(PoolPaths(self.state), "local").get("smollm2").fingerprint
        store = CatalogStore(PoolPaths(state), "local")
        with store.edit() as catalog:
            store.require(catalog, "smollm2").fingerprint = reference
        reports = shutil.copytree(self.reports, root / "reports")
        return state, own, reports


def certify_smollm2(state: Path, root: Path) -> Smollm2Certified:
    """Run the headless matrix over SmolLM2 (float32 first: it records the reference) on the pool at `state`."""
    own = _own_links(Path(CatalogStore(PoolPaths(state), "local").get("smollm2").path), root / "model")
    _point_at(state, own)
    reports = root / "reports"
    config = write_config(root / "config.toml", state, reports, max_tokens=8)
    run = run_headless(config, "--models", "smollm2", "--backends", "cpu", "--dtypes", "float32", "bfloat16")
    results: dict[str, CellResult] = {}
    if (reports / "matrix.json").exists():
        results = {c.key.id: c for c in MatrixReport.model_validate_json((reports / "matrix.json").read_text()).cells}
    return Smollm2Certified(state, own, reports, run, results)
