"""A cell's environment fingerprint: what it ran on, from the pool (`pool.status`: OS, kernel, CPU,
driver, llorch) and from its worker (`GET /info`: Python, torch, transformers, CUDA, GPU, the dtype
it really computed in), plus the model's content hash — and what changed between two of them.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from llorch_tui.matrix.probes import WorkerHTTP
from llorch_tui.protocol.catalog import ModelEntry
from llorch_tui.protocol.matrix import DEFAULT_DTYPE, CellKey
from llorch_tui.protocol.parity import WEIGHT_SUFFIXES, EnvFingerprint, ParityResult, weights_digest

log = logging.getLogger("llorch.matrix")

# How the diff names a field; every EnvFingerprint field is compared.
LABELS = {"llorch_version": "llorch", "worker_version": "llorch-worker", "python": "Python", "torch": "torch",
          "transformers": "transformers", "os": "OS", "kernel": "kernel", "cpu": "CPU", "gpu": "GPU",
          "driver": "driver", "cuda": "CUDA", "dtype": "dtype", "model_sha256": "model weights",
          "faults": "fault injection"}


async def fetch_worker_info(http: WorkerHTTP) -> dict[str, Any] | None:
    """The worker's `/info`, or None when it cannot tell (an older worker has no such route): the
    pool-side facts are still recorded, and a missing fact is never reported as a change."""
    try:
        async with http.session.get(f"{http.base}/info", timeout=http.timeout) as resp:
            if resp.status != 200:
                log.info("worker %s has no /info (HTTP %s): environment from the pool only", http.base, resp.status)
                return None
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.info("worker /info failed: %s", exc)
        return None
    return body if isinstance(body, dict) else None


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


def env_fingerprint(key: CellKey, pool_status: dict[str, Any] | None, info: dict[str, Any] | None,
                    entry: ModelEntry | None, parity: ParityResult | None = None,
                    gpu_index: int | None = None) -> EnvFingerprint:
    st, w = pool_status or {}, info or {}
    env = EnvFingerprint(
        llorch_version=st.get("llorch_version"), worker_version=w.get("worker_version"),
        # The worker's interpreter is the one that computes (a pool may run workers from another venv).
        python=w.get("python") or st.get("python"), torch=w.get("torch") or st.get("torch"),
        transformers=w.get("transformers"), os=st.get("os"), kernel=st.get("kernel") or w.get("kernel"),
        cpu=st.get("cpu"),
        # What the worker really computed in ("auto" resolved), else what was asked for.
        dtype=w.get("dtype") or (key.dtype if key.dtype != DEFAULT_DTYPE else None),
        model_sha256=model_sha256(entry, parity), faults=w.get("faults"))
    if key.backend != "cpu":  # a new NVIDIA driver does not change what a cpu cell computes
        gpus = st.get("gpus") or []
        pool_gpu = next((g.get("name") for g in gpus if gpu_index is None or g.get("index") == gpu_index), None)
        env.gpu = w.get("gpu") or pool_gpu
        env.driver, env.cuda = st.get("driver_version"), w.get("cuda")
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
