"""The app's pool actions (download, spawn, stop, add a model, follow logs): each one a Textual worker.

Two kinds of "worker" meet here: Textual's (`run_worker`, the app's background tasks) and the pools'
inference workers, whose actions say so in their names (`spawn_inference_worker`, `stop_inference_worker`).

A mixin of LlorchApp, so its workers report failures through the app's one error handler.
"""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from textual.message import Message

from llorch_tui import __version__
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.protocol.downloads import DownloadProgress
from llorch_tui.protocol.events import Event, LogLine, ModelStage, SpawnStage
from llorch_tui.tui.messages import LogUpdate
from llorch_tui.units import fmt_bytes
from llorch_tui.protocol.params import (DownloadParams, FitParams, LogsParams, RegisterParams, SpawnParams, StopParams,
                                        SynthParams)

if TYPE_CHECKING:
    from llorch_tui.config import PoolConfig
    from llorch_tui.fleet_ops.install import InstallOptions
    from llorch_tui.transport.base import Transport
    from llorch_tui.tui.app_host import AppHost as _Base
else:
    _Base = object


class DownloadEvent(Message):
    """High-rate progress: a newer event for the same download replaces a queued older one."""

    def __init__(self, pool: str, progress: DownloadProgress) -> None:
        super().__init__()
        self.pool, self.progress = pool, progress

    def can_replace(self, message: Message) -> bool:
        return (isinstance(message, DownloadEvent) and message.pool == self.pool
                and message.progress.model == self.progress.model)


def _spawn_stage(ev: SpawnStage) -> str:
    """A spawn progress event in words."""
    stage = ev.stage
    if stage == "port":
        return f"port {ev.port} " + ("bound, held for the worker" if ev.held else "reserved")
    if stage == "spawned":
        return f"process started (pid {ev.pid})"
    if stage == "loading":
        return "loading the model"
    if stage == "waiting":
        timeout = ev.timeout_s
        return "waiting for it to answer" + (f" (gives up after {timeout:.0f} s)" if timeout else "")
    if stage == "ready":
        load = ev.load_s
        return "ready" + (f", loaded in {load:.1f} s" if load is not None else "")
    return stage


SYNTH_STAGES = {"check": "checking the id and the architecture", "synthesize": "writing random weights",
                "register": "adding it to the catalog", "done": "done",
                # registering a GGUF path: read, hash, convert once to safetensors (a minute for a small model)
                "inspect": "reading the GGUF header", "hash": "hashing the GGUF",
                "reuse": "reusing its earlier safetensors conversion",
                "convert": "converting the GGUF to safetensors, once (about a minute for a small model)"}


# A model the pool has not downloaded is estimated from the Hub's metadata: bounded, it is only a hint.
FIT_TIMEOUT_S = 60.0


class PoolActions(_Base):
    # Where an install's agent_command is recorded, (path, exists); None: nowhere (run_app sets it).
    config_target: tuple[Path, bool] | None = None
    # The install's transport for a pool; None: its own (SSH or local). Tests give one that answers scripted.
    install_transport: Callable[[PoolConfig], Transport] | None = None

    def request_fits(self, pool: str) -> None:
        """Estimate, once per catalog model (again after it is downloaded), what a worker of it needs on
        `pool`: the catalog's fit column. One pool's estimates run one after the other, in the background."""
        pv = self.model.pools[pool]
        if self.fleet is None or pool in self._fitting or pv.snapshot is None or pv.snapshot.catalog is None:
            return
        entries = {m.id: m.downloaded for m in pv.snapshot.catalog.models}
        wanted = self.model.fits.wanted(pool, pv.snapshot.catalog.models)
        if not wanted:
            return
        for model in wanted:  # pending from now: the column says "…", not "—"
            self.model.fits.start((pool, model, "auto"), entries[model])
        self._fitting.add(pool)
        self.run_worker(partial(self._fit_models, pool, wanted), name=f"fit estimates on {pool}",  # type: ignore[arg-type]
                        group=f"fit:{pool}", exit_on_error=False)

    async def _fit_models(self, pool: str, models: list[str]) -> None:
        try:
            for model in models:
                await self.estimate_fit(pool, model)
                self.schedule_redraw()
        finally:
            self._fitting.discard(pool)

    async def estimate_fit(self, pool: str, model: str, dtype: str = "auto") -> None:
        """One `models.fit` into the fit book; a failure is kept as the reason there is no estimate (quietly:
        an estimate is a hint, and a pool without network cannot read the Hub's metadata)."""
        key = (pool, model, dtype)
        if key not in self.model.fits.records:
            entry = self.model.model_entry(f"{pool}/{model}")
            self.model.fits.start(key, bool(entry and entry.downloaded))
        try:
            report = await self.live_fleet().api(pool).models.fit(
                FitParams(id=model, dtype=None if dtype == "auto" else dtype), timeout=FIT_TIMEOUT_S)
        except asyncio.CancelledError:
            self.model.fits.records.pop(key, None)  # asked again next time, never left "estimating…"
            raise
        except LlorchError as exc:
            self.model.fits.done(key, None, exc.message)
        except TimeoutError:
            self.model.fits.done(key, None, f"no answer within {FIT_TIMEOUT_S:.0f} s")
        else:
            self.model.fits.done(key, report)

    def start_download(self, pool: str, model: str) -> None:
        if not self._refuse("download"):
            self.run_worker(self._download(pool, model), name=f"download {model} on {pool}",
                            group=f"download:{pool}/{model}", exclusive=True, exit_on_error=False)

    async def _download(self, pool: str, model: str) -> None:
        self.event("information", f"downloading {model} on {pool}")

        def on_event(ev: Event) -> None:
            if isinstance(ev, DownloadProgress):
                self.post_message(DownloadEvent(pool, ev))

        try:
            result = await self.live_fleet().api(pool).models.download(DownloadParams(id=model), on_event=on_event)
        except asyncio.CancelledError:
            self.model.download_end(pool, model, "cancelled")
            raise
        except LlorchError as exc:
            self.model.download_end(pool, model, "cancelled" if exc.code == ErrorCode.CANCELLED else "failed",
                                    exc.message)
            raise
        except BaseException as exc:
            self.model.download_end(pool, model, "failed", str(exc))
            raise
        self.model.download_end(pool, model, "done")
        done = "already downloaded" if result.noop else f"downloaded ({fmt_bytes(result.bytes_fetched)})"
        self.event("information", f"{model} on {pool}: {done}")
        self.refresh_all(force=True)

    def copy_model(self, source: str, model: str, target: str) -> None:
        if not self._refuse("copy"):
            self.run_worker(self._copy(source, model, target), name=f"copy {model} {source}->{target}",
                            group=f"download:{target}/{model}", exclusive=True, exit_on_error=False)

    async def _copy(self, source: str, model: str, target: str) -> None:
        from llorch_tui.fleet_ops.copy import copy_model

        self.event("information", f"copying {model} from {source} to {target} through this machine")

        def on_event(ev: DownloadProgress) -> None:
            # Shown as a download onto the target; on the app's loop: applied at once,
            # so the end recorded below cannot be overtaken by a queued progress message
            self.model.download_event(target, ev)
            self.schedule_redraw()

        fleet = self.live_fleet()
        try:
            result = await copy_model(fleet.config, model, source, [target], on_event=on_event, fleet=fleet)
        except BaseException as exc:
            self.model.download_end(target, model, "failed", getattr(exc, "message", str(exc)))
            raise
        t = result.targets[0]
        if not t.ok:
            message, hint = (t.error.message, t.error.hint) if t.error else ("failed", None)
            self.model.download_end(target, model, "failed", message)
            self.event("error", f"copy of {model} to {target} failed: {message}", hint)
            return
        self.model.download_end(target, model, "done")
        done = "already there" if t.noop else f"copied ({fmt_bytes(t.bytes_sent)}, sha256-verified)"
        self.event("information", f"{model} on {target}: {done}")
        self.refresh_all(force=True)

    def spawn_inference_worker(self, pool: str, params: SpawnParams) -> None:
        if not self._refuse("spawn"):
            self.run_worker(self._spawn(pool, params), name=f"spawn {params.model} on {pool}",
                            exit_on_error=False)

    async def _spawn(self, pool: str, params: SpawnParams) -> None:
        self.event("information", f"starting a {params.backend} worker for {params.model} on {pool} "
                   "(its stages go to the event log)")
        last = [""]

        def on_event(ev: Event) -> None:
            if not isinstance(ev, SpawnStage) or not ev.stage or ev.stage == last[0]:
                return  # a stage repeated (waiting ... waiting) is news only once
            last[0] = ev.stage
            self.event("information", f"worker for {params.model} on {pool}: {_spawn_stage(ev)}"
                       + (f" — {ev.message}" if ev.message else ""), notify=False)

        rec = await self.live_fleet().api(pool).workers.spawn(params, on_event=on_event)
        self.event("information", f"worker {rec.id} ready on {pool} port {rec.port}")
        self.refresh_all(force=True)

    def stop_inference_worker(self, pool: str, worker_id: str) -> None:
        if not self._refuse("stop"):
            self.run_worker(self._stop(pool, worker_id), name=f"stop {worker_id} on {pool}", exit_on_error=False)

    async def _stop(self, pool: str, worker_id: str) -> None:
        await self.live_fleet().api(pool).workers.stop(StopParams(id=worker_id))
        self.event("information", f"worker {worker_id} on {pool} stopped")
        self.refresh_all(force=True)

    def add_model(self, pool: str, params: SynthParams | RegisterParams) -> None:
        """Synthesize a checkpoint (SynthParams) or register a model (RegisterParams) on one pool."""
        if not self._refuse("adding a model"):
            what = "synthesize" if isinstance(params, SynthParams) else "register"
            self.run_worker(self._add_model(pool, params), name=f"{what} {params.id} on {pool}",
                            exit_on_error=False)

    async def _add_model(self, pool: str, params: SynthParams | RegisterParams) -> None:
        models = self.live_fleet().api(pool).models

        def on_event(ev: Event) -> None:
            if isinstance(ev, ModelStage) and ev.stage in SYNTH_STAGES and ev.stage != "done":
                self.event("information", f"{params.id} on {pool}: {SYNTH_STAGES[ev.stage]}", notify=False)

        if isinstance(params, SynthParams):
            self.event("information", f"synthesizing {params.id} (a tiny random-weight "
                       f"{params.architecture}) on {pool}: takes a few seconds")
            entry = await models.synth(params, on_event=on_event)
        else:
            self.event("information", f"registering {params.id} on {pool}")
            entry = await models.register(params)
        self.event("information", f"{entry.id} is in the catalog of {pool}")
        self.refresh_all(force=True)

    def install_llorch(self, pool: str, opts: InstallOptions) -> None:
        """Install this machine's llorch on `pool` (llorch pool install), then reconnect it through the new agent."""
        if not self._refuse("install"):
            self.run_worker(self._install(pool, opts), name=f"install llorch on {pool}", group=f"install:{pool}",
                            exclusive=True, exit_on_error=False)

    async def _install(self, pool: str, opts: InstallOptions) -> None:
        from llorch_tui.fleet_ops.install import install_pool

        fleet = self.live_fleet()
        cfg = next(p for p in self.config.pools if p.name == pool)
        self.event("information", f"installing llorch {__version__} on {pool} (its steps go to the event log)")

        def on_event(name: str, data: dict[str, Any]) -> None:
            if name == "progress":
                self.event("information", f"install on {pool}: {data.get('stage')}: {data.get('message')}",
                           notify=False)

        transport = self.install_transport(cfg) if self.install_transport is not None else None
        result = await install_pool(cfg, opts, on_event, self.config_target, transport)
        verb = "already up to date" if result.noop else "installed"
        self.event("information", f"{pool}: llorch {result.version} {verb} in {result.venv} "
                   f"(torch {result.torch or 'none'})")
        if cfg.agent_command != result.agent_command:
            new = cfg.model_copy(update={"agent_command": result.agent_command})
            self.config.pools = [new if p.name == pool else p for p in self.config.pools]
            await fleet.reconfigure(new)
            self.event("information", f"{pool}: reconnecting through {result.agent_command}", notify=False)
        self.refresh_all(force=True)

    def open_logs(self, pool: str, worker_id: str) -> None:
        self.following = (pool, worker_id)
        self.log_buffer.clear()
        self.switch_mode("logs")
        self.signals.worker_log.publish(LogUpdate("start", pool, worker_id))
        self.run_worker(self._follow(pool, worker_id), name=f"logs {worker_id} on {pool}", group="logs",
                        exclusive=True, exit_on_error=False)

    async def _follow(self, pool: str, worker_id: str) -> None:
        def write(lines: list[str]) -> None:
            # Buffered too: the first lines may arrive before the logs screen is mounted.
            self.log_buffer.extend(lines)
            self.signals.worker_log.publish(LogUpdate("lines", pool, worker_id, lines))

        def on_event(ev: Event) -> None:
            if isinstance(ev, LogLine):
                write([ev.text])

        result = await self.live_fleet().api(pool).workers.logs(LogsParams(id=worker_id, lines=200, follow=True),
                                                                on_event=on_event)
        write(result.lines)
        self.signals.worker_log.publish(
            LogUpdate("ended", pool, worker_id, text=f"Log of worker {worker_id} on {pool} (ended: the worker is gone)"))

