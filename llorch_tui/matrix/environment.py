"""A cell's environment fingerprint: what it ran on, from the pool (`pool.status`: OS, kernel, CPU,
driver, llorch) and from its worker (`GET /info`: Python, torch, transformers, CUDA, GPU, the dtype
it really computed in), plus the model's content hash — and what changed between two of them.
"""

from __future__ import annotations

import logging

import aiohttp

from llorch_worker.api import WorkerInfo

from llorch_tui.errors import LlorchError
from llorch_tui.matrix.probes import WorkerHTTP
from llorch_tui.protocol.catalog import ModelEntry
from llorch_tui.protocol.matrix import DEFAULT_DTYPE, CellKey
from llorch_tui.protocol.parity import WEIGHT_SUFFIXES, EnvFingerprint, ParityResult, weights_digest
from llorch_tui.protocol.status import PoolStatus

log = logging.getLogger("llorch.matrix")

# How the diff names a field; every EnvFingerprint field is compared.
LABELS = {"llorch_version": "llorch", "worker_version": "llorch-worker", "python": "Python", "torch": "torch",
          "transformers": "transformers", "os": "OS", "kernel": "kernel", "cpu": "CPU", "gpu": "GPU",
          "driver": "driver", "cuda": "CUDA", "dtype": "dtype", "model_sha256": "model weights",
          "faults": "fault injection"}


async def fetch_worker_info(http: WorkerHTTP) -> WorkerInfo | None:
    """The worker's `/info`, or None when it cannot tell (an older worker has no such route): the
    pool-side facts are still recorded, and a missing fact is never reported as a change."""
    try:
        info = await http.worker.info()
    except (aiohttp.ClientError, TimeoutError, LlorchError) as exc:
        log.info("worker %s: /info failed: %s", http.worker.base, exc)
        return None
    if info is None:
        log.info("worker %s has no /info: environment from the pool only", http.worker.base)
    return info


def model_sha256(entry: ModelEntry | None, parity: ParityResult | None = None) -> str | None:
    """The weights' content hash (`weights_digest`): the parity check's own measurement on the files when
    it made one, else the same digest of the catalog's per-file sha256. None when any weight file's hash
    is unknown (a registered local directory nobody hashed yet)."""
    if parity is not None and parity.weights_sha256:
        return parity.weights_sha256
    if entry is None:
        return None
    weights = [(f.name, f.sha256) for f in entry.files if f.name.endswith(WEIGHT_SUFFIXES)]
    if not weights or any(sha is None for _, sha in weights):
        return None
    return weights_digest((name, sha) for name, sha in weights if sha is not None)


def env_fingerprint(key: CellKey, pool_status: PoolStatus | None, info: WorkerInfo | None,
                    entry: ModelEntry | None, parity: ParityResult | None = None,
                    gpu_index: int | None = None) -> EnvFingerprint:
    st, w = pool_status, info or WorkerInfo()
    env = EnvFingerprint(
        llorch_version=st.llorch_version if st else None, worker_version=w.worker_version,
        # The worker's interpreter is the one that computes (a pool may run workers from another venv).
        python=w.python or (st.python if st else None), torch=w.torch or (st.torch if st else None),
        transformers=w.transformers, os=st.os if st else None,
        kernel=(st.kernel if st else None) or w.kernel, cpu=st.cpu if st else None,
        # What the worker really computed in ("auto" resolved), else what was asked for.
        dtype=w.dtype or (key.dtype if key.dtype != DEFAULT_DTYPE else None),
        model_sha256=model_sha256(entry, parity), faults=w.faults)
    if key.backend != "cpu":  # a new NVIDIA driver does not change what a cpu cell computes
        gpus = st.gpus if st else []
        pool_gpu = next((g.name for g in gpus if gpu_index is None or g.index == gpu_index), None)
        env.gpu = w.gpu or pool_gpu
        env.driver, env.cuda = (st.driver_version if st else None), w.cuda
    return env


def env_changes(before: EnvFingerprint | None, after: EnvFingerprint | None) -> list[str]:
    """What differs, one phrase per fact ("torch 2.13.0 → 2.14.0"). A fact unknown on either side is
    not a change: a run recorded before a fact was collected must not read as an upgrade."""
    if before is None or after is None:
        return []
    out: list[str] = []
    for name in EnvFingerprint.model_fields:
        old, new = getattr(before, name), getattr(after, name)
        if old is None or new is None or old == new:
            continue
        if name == "model_sha256":
            out.append(f"{LABELS[name]} changed (sha256 {str(old)[:12]} → {str(new)[:12]})")
        else:
            out.append(f"{LABELS.get(name, name)} {old} → {new}")
    return out
