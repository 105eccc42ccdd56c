"""A cell's parity certificate: fetch the model's reference (recording it first when the model has
none), compare the cell's worker with it, and say in the event log what was done.

Recording: a cpu float32 cell records the reference from its own worker; any other cell asks the
pool agent (`models.fingerprint`), which starts a cpu float32 worker for it. Whoever stores first
wins (the agent keeps an existing reference), so cells of one model running side by side agree.
"""

from __future__ import annotations

from typing import Any, Callable

import aiohttp

from llorch_tui.client import PoolClient
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.parity.calls import tokenize_chat
from llorch_tui.parity.compare import certify
from llorch_tui.parity.record import record_fingerprint
from llorch_tui.parity.suite import golden_suite
from llorch_tui.protocol.matrix import CellKey, ReasonCode, Stage
from llorch_tui.protocol.params import FingerprintParams, IdParams, SetFingerprintParams
from llorch_tui.protocol.parity import Fingerprint, ModelReference, ParityResult
from llorch_tui.worker_client import WorkerClient, WorkerHTTPError

ProgressFn = Callable[[Stage, "float | None", str], None]
HASH_TIMEOUT_S = 900.0       # hashing a big model's weights on a slow disk
RECORD_SLACK_S = 900.0       # beyond the reference worker's load timeout
SYNTHETIC_SKIP = "synthetic random-weight checkpoint: its answers are noise by construction"
NO_TEMPLATE_SKIP = "the model has no chat template (not an instruct model): golden prompts need one"


class ParityUnavailable(Exception):
    """The worker could not answer a parity request (an older worker, a failure): a probe failure."""


async def _reference(client: PoolClient, model: str) -> ModelReference:
    return await client.api.models.reference(IdParams(id=model), timeout=HASH_TIMEOUT_S)


def _unavailable(exc: LlorchError) -> bool:
    """The worker refused a parity request, or answered something else than the worker API (an older worker)."""
    return isinstance(exc, WorkerHTTPError) or exc.code == ErrorCode.PROTOCOL_MISMATCH


async def _record_here(client: PoolClient, worker: WorkerClient, ref: ModelReference) -> tuple[Fingerprint, bool]:
    """Record from this (cpu float32) worker and store it; (the stored reference, whether it is ours)."""
    fp = await record_fingerprint(worker, weights_sha256=ref.weights_sha256, pool_id=client.pool.name)
    try:
        await client.api.models.set_fingerprint(SetFingerprintParams(id=ref.model, fingerprint=fp),
                                                timeout=HASH_TIMEOUT_S)
        return fp, True
    except LlorchError as exc:
        if exc.code != ErrorCode.ALREADY_EXISTS:
            raise
    again = await _reference(client, ref.model)  # another cell stored one meanwhile: that one is the reference
    assert again.fingerprint is not None
    return again.fingerprint, False


async def certify_cell(client: PoolClient, key: CellKey, session: aiohttp.ClientSession, url: str,
                       options: Any, progress: ProgressFn) -> ParityResult:
    worker = WorkerClient(session, url, timeout=options.request_timeout_s)
    try:
        return await _certify(client, key, worker, options, progress)
    except LlorchError as exc:
        if not _unavailable(exc):
            raise
        raise ParityUnavailable(f"parity check: {exc.message}") from exc


async def _certify(client: PoolClient, key: CellKey, worker: WorkerClient, options: Any,
                   progress: ProgressFn) -> ParityResult:
    ref = await _reference(client, key.model)
    health = await worker.health()
    backend, dtype = health.backend or key.backend, health.dtype or ""
    note = ""
    fp = ref.fingerprint
    if fp is None:
        try:
            if backend == "cpu" and dtype == "float32":
                progress("parity", None, f"no reference fingerprint for {key.model} yet: recording it from this "
                                          "cpu float32 worker")
                fp, ours = await _record_here(client, worker, ref)
                note = "reference recorded by this cell; " if ours else ""
            else:
                progress("parity", None, f"no reference fingerprint for {key.model} yet: recording one on cpu "
                                          "float32 (llorch-pool models fingerprint)")
                rep = await client.api.models.fingerprint(
                    FingerprintParams(id=key.model, timeout_s=options.load_timeout_s),
                    timeout=options.load_timeout_s + RECORD_SLACK_S)
                fp = rep.fingerprint
                note = "reference recorded on cpu float32 for this run; " if rep.recorded else ""
        except LlorchError as exc:
            if exc.code == ErrorCode.CONNECTION_LOST or _unavailable(exc):
                raise
            return ParityResult(verdict="no_reference", dtype=dtype or "float32", weights_sha256=ref.weights_sha256,
                                reason=f"no reference fingerprint, and recording one failed: {exc.message}")
        progress("parity", None, f"reference recorded ({fp.prompt_set_version}, {len(fp.prompts)} prompts)")
    elif ref.weights_changed:
        progress("parity", None, f"the weights of {key.model} changed since its reference was recorded: "
                                  "comparing against the stored reference")
    golden_skip = None
    # The catalog's source says so for checkpoints made here; the worker's /health also knows the
    # marker in config.json, which travels with a synthetic checkpoint downloaded or copied elsewhere.
    if ref.source == "synthetic" or (await worker.health()).synthetic:
        golden_skip = SYNTHETIC_SKIP
    elif not (await tokenize_chat(worker, [{"role": "user", "content": golden_suite().prompts[0].question}])).chat_template:
        golden_skip = NO_TEMPLATE_SKIP
    progress("parity", None, f"comparing with the reference ({fp.prompt_set_version})")
    result = await certify(worker, fp, weights_sha256=ref.weights_sha256, golden_skip=golden_skip)
    if note:
        result.reason = note + (result.reason or "")
    return result


def drift_code(result: ParityResult) -> str | None:
    """The cell's reason code when its certificate failed."""
    return {"parity_drift": ReasonCode.PARITY_DRIFT, "wrong_answer": ReasonCode.WRONG_ANSWER}.get(result.verdict)


DRIFT_HINT = ("compare the worker's environment with the reference's (see the diff report); after a deliberate "
              "change of weights, `llorch-pool models fingerprint MODEL --accept` makes them the reference")
