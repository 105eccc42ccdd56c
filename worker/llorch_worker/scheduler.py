"""The decode loop: a dedicated thread that batches queued jobs and steps them together.

Cache lifecycle (the design's hard rule): every prefill builds a NEW cache (kvcache.growing_cache)
from the prompts of the jobs it admits; nothing survives a batch. Jobs that arrive while a batch runs are
prefilled on their own fresh cache and then joined to the running batch at a step boundary
(continuous batching): both caches are left-padded with zeros to the same length and the
attention mask hides the padding, so a row only ever attends to its own prompt and tokens.
Finished or cancelled rows are dropped at once (`batch_select_indices`).

Left padding + explicit position ids (cumsum of the mask) make a row's numbers independent of
its neighbours, so a seeded request gives the same text alone or in a batch.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .errors import ApiError
from .jobs import Job
from .logprobs import prompt_logprobs, token_logprob
from .metrics import Metrics
from .sampling import SamplingError, choose_batch

log = logging.getLogger("llorch_worker.scheduler")
JOIN_EVERY = int(os.environ.get("LLORCH_WORKER_JOIN_EVERY", "1"))  # steps between admissions
GATHER_GAP_S = float(os.environ.get("LLORCH_WORKER_GATHER_GAP_MS", "2")) / 1000
GATHER_MAX_S = 0.02


@dataclass
class Batch:
    jobs: list[Job]
    cache: Any
    mask: torch.Tensor  # [B, L] 1 = real token
    pos: torch.Tensor  # [B] position of each row's last token
    next_ids: list[int]
    # Some row has left padding. Without any, a decode step passes no attention mask at all: a
    # one-token query over an all-ones mask needs none (transformers would drop it after checking
    # it on every step), which spares that per-step work on the hot path.
    padded: bool = True


class Scheduler:
    def __init__(self, engine: Any, metrics: Metrics, max_batch: int = 16, queue_limit: int = 64) -> None:
        self.engine = engine
        self.metrics = metrics
        self.max_batch = max_batch
        self.queue_limit = queue_limit
        self._pending: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._batch: Batch | None = None
        self._active: list[Job] = []
        self._thread: threading.Thread | None = None
        self._since_join = 0
        self.jobs: dict[str, Job] = {}  # queued or running, by job_id
        self.prefill_fault: int | None = None  # faults.ENV_PREFILL_TOKEN (tests and demos only)

    # ---- called from the event loop -------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="llorch-scheduler", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._stop:
                raise ApiError(503, "shutting_down", "the worker is shutting down", headers={"Retry-After": "1"})
            if job.job_id in self.jobs:
                raise ApiError(409, "duplicate_job", f"job {job.job_id!r} is already queued or running",
                               hint="use a unique job_id per request")
            if len(self._pending) >= self.queue_limit:
                raise ApiError(503, "queue_full",
                               f"{len(self._pending)} requests are waiting (limit {self.queue_limit})",
                               hint="retry after a moment, or start the worker with a larger --queue-limit",
                               headers={"Retry-After": "1"})
            self.jobs[job.job_id] = job
            self._pending.append(job)
            self.metrics.queue_depth = len(self._pending)
            self._cond.notify()

    def cancel(self, job_id: str) -> bool:
        job = self.jobs.get(job_id)
        if job is None:
            return False
        job.cancel()
        with self._cond:
            if job in self._pending:  # never started: finish it now instead of at admission
                self._pending.remove(job)
                self.metrics.queue_depth = len(self._pending)
                self._finish_if_cancelled(job)
            self._cond.notify()
        return True

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        return len(self.jobs)

    def stop(self, cancel_running: bool) -> None:
        with self._cond:
            self._stop = True
            if cancel_running:
                for job in list(self.jobs.values()):
                    job.cancel()
            self._cond.notify()

    def join(self, timeout: float | None = None) -> None:
        if self._thread:
            self._thread.join(timeout)

    # ---- synchronous use (warmup, before the thread starts) ---------------------------
    def run_now(self, job: Job) -> None:
        """Run one job to completion on the calling thread, on its own throwaway cache."""
        with torch.inference_mode():
            batch = self._prefill([job])
            while batch is not None:
                batch = self._decode(batch)

    # ---- the scheduler thread -----------------------------------------------------------
    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not self._pending and self._batch is None and not self._stop:
                        self._cond.wait()
                    if self._stop and not self._pending and self._batch is None:
                        return
                    if self._batch is None:
                        self._gather_burst()
                    room = self.max_batch - (len(self._batch.jobs) if self._batch else 0)
                    # Joining costs a prefill forward pass; requests of a burst arrive over a few
                    # steps, so a running batch admits every JOIN_EVERY steps (or when full) and
                    # one prefill takes several arrivals. An idle worker starts at once.
                    joinable = self._batch is None or (
                        self._mergeable(self._batch)
                        and (self._since_join >= JOIN_EVERY or len(self._pending) >= room))
                    new = [self._pending.popleft() for _ in range(min(room, len(self._pending)))] if joinable else []
                    self._since_join = 0 if new else self._since_join + 1
                    self.metrics.queue_depth = len(self._pending)
                try:
                    self._step(new)
                except Exception as e:  # a failed forward pass fails its jobs, not the worker
                    log.exception("generation failed")
                    self._fail_all(new, e)

    def _gather_burst(self) -> None:
        """An idle worker that just got a request waits while more keep arriving (gaps under
        GATHER_GAP_S, at most GATHER_MAX_S): once prefill starts, torch takes every core and the
        rest of a burst trickles in slowly, each arrival then costing a prefill of its own."""
        deadline = time.monotonic() + GATHER_MAX_S
        while len(self._pending) < self.max_batch and not self._stop:
            seen = len(self._pending)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(min(GATHER_GAP_S, left))
            if len(self._pending) == seen:
                return

    def _step(self, new: list[Job]) -> None:
        new = [j for j in new if not self._finish_if_cancelled(j)]
        if new:
            fresh = self._prefill_isolated(new)
            if fresh is not None:
                self._batch = fresh if self._batch is None else self._merge(self._batch, fresh)
        if self._batch is not None:
            self._batch = self._decode(self._batch)

    def _prefill_isolated(self, jobs: list[Job]) -> Batch | None:
        """Prefill the newcomers; a failure fails only them, never the running batch. When several
        fail together, each is retried alone so one bad prompt does not take the others with it."""
        try:
            return self._prefill(jobs)
        except Exception as e:
            log.exception("prefill of %d request(s) failed", len(jobs))
            if len(jobs) == 1:
                self._fail_all(jobs, e, include_batch=False)
                return None
        fresh: Batch | None = None
        for job in jobs:
            one = self._prefill_isolated([job])
            if one is not None:
                fresh = one if fresh is None else self._merge(fresh, one)
        return fresh

    def _fail_all(self, new: list[Job], e: Exception, include_batch: bool = True) -> None:
        jobs = list(new) + (self._batch.jobs if self._batch and include_batch else [])
        if include_batch:
            self._batch = None
        code = "oom" if "out of memory" in str(e).lower() else "internal"
        for job in jobs:
            self._fail(job, code, f"{type(e).__name__}: {e}")

    def _fail(self, job: Job, code: str, message: str) -> None:
        if not job.done:
            job.finish_reason = "error"
            self._finish(job, error={"code": code, "message": message})

    # ---- model steps -------------------------------------------------------------------
    def _prefill(self, jobs: list[Job]) -> Batch | None:
        from .kvcache import growing_cache

        eng = self.engine
        if self.prefill_fault is not None and any(self.prefill_fault in j.prompt_ids for j in jobs):
            from .faults import PrefillFault

            raise PrefillFault(f"injected prefill failure: a prompt holds token {self.prefill_fault}")
        width = max(len(j.prompt_ids) for j in jobs)
        ids = torch.full((len(jobs), width), eng.pad_id, dtype=torch.long)
        mask = torch.zeros((len(jobs), width), dtype=torch.long)
        for i, j in enumerate(jobs):
            n = len(j.prompt_ids)
            ids[i, width - n:] = torch.tensor(j.prompt_ids, dtype=torch.long)
            mask[i, width - n:] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = growing_cache(eng.model.config)  # fresh, per prefill: never reused
        # echo (prompt log-probs) needs the logits of every prompt position, else only the last
        echo = any(j.echo_logprobs for j in jobs)
        out = eng.model(input_ids=ids.to(eng.device), attention_mask=mask.to(eng.device),
                        position_ids=pos.to(eng.device), use_cache=True, logits_to_keep=0 if echo else 1,
                        **{eng.cache_kw: cache})
        for i, j in enumerate(jobs):
            if j.echo_logprobs:
                n = len(j.prompt_ids)
                j.prompt_logprobs = prompt_logprobs(eng.adjust_logits(out.logits[i, width - n:width - 1]),
                                                    j.prompt_ids, j.top_logprobs or 0)
        batch = Batch(jobs=list(jobs), cache=cache, mask=mask.to(eng.device), pos=pos[:, -1].to(eng.device),
                      next_ids=[], padded=any(len(j.prompt_ids) < width for j in jobs))
        return self._advance(batch, eng.adjust_logits(out.logits[:, -1, :]))

    def _decode(self, running: Batch) -> Batch | None:
        eng = self.engine
        batch = self._drop(running, [j for j in running.jobs if self._finish_if_cancelled(j)])
        if batch is None:
            return None
        self.metrics.decode_steps += 1
        self.metrics.batch_rows_max = max(self.metrics.batch_rows_max, len(batch.jobs))
        ones = torch.ones((len(batch.jobs), 1), dtype=batch.mask.dtype, device=batch.mask.device)
        batch.mask = torch.cat([batch.mask, ones], dim=1)
        batch.pos = batch.pos + 1
        ids = torch.tensor(batch.next_ids, dtype=torch.long, device=eng.device)[:, None]
        out = eng.model(input_ids=ids, attention_mask=batch.mask if batch.padded else None,
                        position_ids=batch.pos[:, None],
                        use_cache=True, **{eng.cache_kw: batch.cache})
        return self._advance(batch, eng.adjust_logits(out.logits[:, -1, :]))

    def _advance(self, batch: Batch, logits: torch.Tensor) -> Batch | None:
        eng = self.engine
        tokens = choose_batch(logits, batch.jobs)
        finished: list[Job] = []
        next_ids: list[int] = []
        for row, (job, tok) in enumerate(zip(batch.jobs, tokens)):
            if isinstance(tok, SamplingError):  # this row only: the others keep generating
                next_ids.append(eng.pad_id)
                self._fail(job, tok.code, str(tok))
                finished.append(job)
                continue
            next_ids.append(tok)
            if self._finish_if_cancelled(job):
                finished.append(job)
                continue
            try:
                self._accept(job, tok, logits[row])
            except Exception as e:  # a row's bookkeeping (detokenizing, stop strings) fails that row
                log.exception("request %s failed", job.job_id)
                self._fail(job, "internal", f"{type(e).__name__}: {e}")
                finished.append(job)
                continue
            if job.done:
                self._finish(job)
                finished.append(job)
        batch.next_ids = next_ids
        return self._drop(batch, finished)

    def _accept(self, job: Job, tok: int, logits: torch.Tensor) -> None:
        """Record one sampled token for a row (`logits`: that row's): eos, text, stop strings, length."""
        eng = self.engine
        if job.max_tokens == 0:  # echo only: the prompt's log-probs were the whole answer
            job.finish_reason = "length"
        elif tok in eng.eos_ids and not job.ignore_eos:
            if job.t_first is None:
                job.t_first = time.monotonic()
            job.finish_reason = "stop"
        else:
            if job.top_logprobs is not None:
                job.token_logprobs.append(token_logprob(logits, tok, job.top_logprobs))
            delta = job.push_token(tok, eng.decode)
            out, hit = job.accept_text(delta) if delta else ("", False)
            if out:
                job.emit(job.token_event(out))
            limit = min(job.max_tokens, eng.context_length - len(job.prompt_ids))
            if hit:
                job.finish_reason = "stop"
                job.stopped_by_string = True
            elif len(job.generated) >= limit:
                job.finish_reason = "length"

    def _drop(self, batch: Batch, finished: list[Job]) -> Batch | None:
        if not finished:
            return batch
        keep = [i for i, j in enumerate(batch.jobs) if j not in finished]
        if not keep:
            return None  # the cache goes with the batch
        idx = torch.tensor(keep, dtype=torch.long, device=batch.mask.device)
        batch.cache.batch_select_indices(idx)
        batch.jobs = [batch.jobs[i] for i in keep]
        batch.next_ids = [batch.next_ids[i] for i in keep] if batch.next_ids else []
        batch.mask = batch.mask[idx]
        batch.pos = batch.pos[idx]
        # columns no remaining row attends to (a long prompt that finished) are cut off
        start = int(batch.mask.any(dim=0).nonzero()[0])
        if start > 0 and self._mergeable(batch):
            batch.mask = batch.mask[:, start:]
            for layer in batch.cache.layers:
                layer.keys = layer.keys[:, :, start:, :]
                layer.values = layer.values[:, :, start:, :]
        batch.padded = not bool(batch.mask.all())
        return batch

    @staticmethod
    def _mergeable(batch: Batch) -> bool:
        from transformers.cache_utils import DynamicLayer

        from .kvcache import GrowingLayer

        return all(type(layer) in (DynamicLayer, GrowingLayer) for layer in batch.cache.layers)

    def _merge(self, a: Batch, b: Batch) -> Batch:
        """Join b's rows to a: left-pad the shorter cache with masked zeros, then concatenate."""
        la, lb = a.mask.shape[1], b.mask.shape[1]
        width = max(la, lb)
        for layer_a, layer_b in zip(a.cache.layers, b.cache.layers):
            for name in ("keys", "values"):
                ta = F.pad(getattr(layer_a, name), (0, 0, width - la, 0))
                tb = F.pad(getattr(layer_b, name), (0, 0, width - lb, 0))
                setattr(layer_a, name, torch.cat([ta, tb], dim=0))
        a.mask = torch.cat([F.pad(a.mask, (width - la, 0)), F.pad(b.mask, (width - lb, 0))], dim=0)
        a.pos = torch.cat([a.pos, b.pos])
        a.jobs += b.jobs
        a.next_ids = a.next_ids + b.next_ids
        a.padded = a.padded or b.padded or la != lb
        return a

    # ---- bookkeeping ---------------------------------------------------------------------
    def _finish_if_cancelled(self, job: Job) -> bool:
        if job.cancelled.is_set() and not job.done:
            job.finish_reason = "cancelled"
            self._finish(job)
            return True
        return job.done

    def _finish(self, job: Job, error: dict[str, str] | None = None) -> None:
        job.t_done = time.monotonic()
        if error is None and not job.stopped_by_string:
            delta = job.flush_text(self.engine.decode)
            if delta:
                job.emit(job.token_event(delta))
        self.jobs.pop(job.job_id, None)
        summary = job.summary()
        self.metrics.observe_job(summary)
        job.emit({"type": "error", **error} if error else {"type": "done", **summary})
