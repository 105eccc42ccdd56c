"""Turn a worker that did not come up into one clear LlorchError: the worker's reason, the next step, the log tail."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool.worker_registry import log_tail
from llorch_tui.protocol.catalog import ModelEntry
from llorch_tui.protocol.workers import WorkerRecord

if TYPE_CHECKING:
    from llorch_worker.api import ErrorDetail

TAIL_LINES = 20

# The worker's LLORCH_WORKER_ERROR code -> what the operator does next.
HINTS: dict[str, str] = {
    "checkpoint_corrupt": "the model's files are damaged: `llorch-pool models verify {model}`, then {refetch}",
    "model_invalid": "the checkpoint is not one the worker can load: `llorch-pool models verify {model}`",
    "tokenizer_missing": "the tokenizer files are missing: {refetch}",
    "backend_unavailable": "this backend does not work here: `llorch-pool status --probe` lists the usable ones",
    "dtype_unsupported": "{backend} cannot compute in this dtype on this machine: spawn with another --dtype "
                         "(auto picks one it supports)",
    "oom": "not enough memory for this model on {backend}: stop other workers (`llorch-pool worker list`), "
           "try --dtype float16/bfloat16, or another GPU",
    "port_in_use": "another process took port {port} meanwhile: spawn again (it picks the next free port)",
}


def refetch_hint(model: str, entry: ModelEntry | None = None) -> str:
    """The command that puts a model's files back, for the way this model came: a synthetic one is
    synthesized again, a local one copied back, others downloaded again."""
    source = entry.source if entry is not None else "hub"
    if source == "synthetic" and entry is not None:
        return f"`llorch-pool models synth {model} --architecture {entry.architecture} --force`"
    if source == "local" and entry is not None:
        return f"copy the model's files back into {entry.path} (a local model has no repository to download from)"
    return f"`llorch-pool models download {model} --force`"


def failure_error(rec: WorkerRecord, what: str, code: str | None = None, hint: str | None = None,
                  reported: ErrorDetail | None = None, entry: ModelEntry | None = None) -> LlorchError:
    """`rec` has exit info filled (fill_exit_info). `reported` is the error of a `failed` callback."""
    reason = (reported.code if reported is not None else None) or rec.error_code
    detail = reported.message if reported is not None else None
    tail = log_tail(Path(rec.log_path), TAIL_LINES)
    message = f"worker {rec.id} ({rec.model} on {rec.backend}, port {rec.port}) {what}"
    if reason:
        message += f": {reason}"
        if detail:
            message += f": {detail}"
    elif rec.exit_reason:
        message += f": {rec.exit_reason}"
    if code is None:
        code = ErrorCode.PORT_IN_USE if reason == "port_in_use" else ErrorCode.WORKER_FAILED
    if hint is None:
        hint = HINTS.get(reason or "", "the log tail is attached; all of it: llorch-pool worker logs {id}")
        hint = hint.format(model=rec.model, backend=rec.backend, port=rec.port, id=rec.id,
                           refetch=refetch_hint(rec.model, entry))
    return LlorchError(code, message, hint, worker_id=rec.id, reason=reason, exit_code=rec.exit_code,
                       signal=rec.exit_signal, log_path=rec.log_path, log_tail=tail)
