"""`llorch models copy ID --from A --to B [--to C ...]`: a model's files, pool to pool, through this machine.

The control plane holds one agent session per pool already; it reads each chunk from A's agent
(`models.read_chunk`: only files A's catalog lists for that model) and writes it to every target's
agent (`models.receive_chunk`), so A's disk is read once per file however many targets there are,
and the pools never need a route to each other. The next chunk is read while the current one is
being written. Each target stages the files and checks every one against A's sha256 before the
model is moved into place (pool/receive.py): a byte damaged on the way fails that file with
`checksum_mismatch`, and the copy can simply be run again. Run again after a kill, it continues from
the bytes each target already holds; a target that already has the same files is a no-op.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, TypeVar

from pydantic import BaseModel

from llorch_tui.config import Config
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.fleet import Fleet
from llorch_tui.fleet_ops.copy_direct import DirectRoute, fetch_file, open_lan_route, open_route
from llorch_tui.lan_address import check_lan_address
from llorch_tui.pool.download_progress import ProgressReporter
from llorch_tui.protocol.catalog import ModelEntry, ModelFile, ModelOrigin
from llorch_tui.protocol.downloads import DownloadProgress
from llorch_tui.pool_api import call_op
from llorch_tui.protocol import ErrorDoc, ops
from llorch_tui.protocol.events import EventHandler
from llorch_tui.protocol.ops import OpRef
from llorch_tui.protocol.params import BeginParams, ChunkParams, FileParams, IdParams, WriteParams

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R")

DEFAULT_CHUNK = 1024 * 1024
CALL_TIMEOUT_S = 300.0
# A copy reports its progress as one download onto the targets.
CopyProgress = Callable[[DownloadProgress], None]
Route = Literal["auto", "lan", "direct", "relay"]
RELAY_VIA = "control plane"
DIRECT_VIA = "mirror (forwarded port)"
LAN_VIA = "mirror (LAN)"
# Test hook: may change a chunk on its way (target pool, file, offset, bytes) -> bytes.
Tamper = Callable[[str, str, int, bytes], bytes]


@dataclass
class TargetResult:
    pool: str
    ok: bool
    noop: bool = False
    bytes_sent: int = 0
    bytes_resumed: int = 0
    model: ModelEntry | None = None  # the target's new catalog entry
    error: ErrorDoc | None = None

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "model": self.model.model_dump(mode="json") if self.model else None,
                "error": self.error.model_dump(mode="json") if self.error else None}


@dataclass
class CopyResult:
    model: str
    source: str
    via: str
    bytes_total: int
    bytes_read: int = 0  # relay: from the source's disk, once per file whatever the number of targets
    targets: list[TargetResult] = field(default_factory=list)
    # the route used: "lan" (the source's mirror on its LAN address), "direct" (the source's mirror through
    # ports forwarded here), "relay" (chunks through here), "none" (nothing to send)
    route: str = "relay"
    route_note: str | None = None  # why auto did not take the LAN or the direct route

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.targets)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "source": self.source, "via": self.via, "route": self.route,
                "route_note": self.route_note, "bytes_total": self.bytes_total, "bytes_read": self.bytes_read,
                "ok": self.ok, "targets": [t.to_json() for t in self.targets]}


class _Copy:
    def __init__(self, fleet: Fleet, model_id: str, source: str, targets: list[str], chunk: int,
                 reporter: ProgressReporter, tamper: Tamper | None) -> None:
        self.fleet, self.id, self.source, self.chunk, self.reporter, self.tamper = \
            fleet, model_id, source, chunk, reporter, tamper
        self.results = {t: TargetResult(t, ok=False) for t in targets}
        self.have: dict[str, dict[str, int]] = {}
        self.bytes_read = 0

    def active(self) -> list[str]:
        return [t for t, r in self.results.items() if r.error is None and not r.noop]

    def fail(self, target: str, err: LlorchError) -> None:
        self.results[target].error = err.to_doc()

    async def call(self, pool: str, ref: OpRef[P, R], params: P, on_event: EventHandler | None = None) -> R:
        try:
            return await call_op(self.fleet.client(pool), ref, params, on_event, timeout=CALL_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise LlorchError(ErrorCode.TIMEOUT, f"pool {pool} did not answer {ref.name} within {CALL_TIMEOUT_S:.0f}s",
                              "check the pool (llorch pool doctor), then run the copy again: it resumes") from None

    async def begin(self, entry: ModelEntry, origin: ModelOrigin, force: bool) -> None:
        async def one(t: str) -> None:
            try:
                r = await self.call(t, ops.MODELS_RECEIVE_BEGIN, BeginParams(entry=entry, origin=origin, force=force))
            except LlorchError as e:
                self.fail(t, e)
                return
            self.results[t].noop = r.noop
            self.results[t].ok = r.noop
            self.have[t] = dict(r.have)
            self.results[t].bytes_resumed = 0 if r.noop else sum(r.have.values())

        await asyncio.gather(*(one(t) for t in self.results))

    async def read(self, f: ModelFile, offset: int) -> tuple[bytes, str]:
        """(bytes, their base64 as received): a whole chunk is forwarded as it came, not re-encoded per target."""
        res = await self.call(self.source, ops.MODELS_READ_CHUNK,
                              ChunkParams(id=self.id, file=f.name, offset=offset, length=min(self.chunk, f.size - offset)))
        data = base64.b64decode(res.data)
        if not data:
            raise LlorchError(ErrorCode.CHECKPOINT_CORRUPT, f"{f.name} on pool {self.source} ends at byte {offset}, "
                              f"its catalog says {f.size}", f"`llorch pool models verify {self.id} --host {self.source}`")
        self.bytes_read += len(data)
        return data, res.data

    async def write(self, t: str, f: ModelFile, offset: int, data: bytes, encoded: str) -> None:
        """Send the part of [offset, offset+len) that target t does not hold yet."""
        have = self.have[t].get(f.name, 0)
        if have >= offset + len(data) or have < offset:
            return  # already there (resumed further than the others); `have < offset` cannot happen in order
        piece = data[have - offset:]
        if self.tamper is not None:
            piece = self.tamper(t, f.name, have, piece)
        if have != offset or self.tamper is not None:
            encoded = base64.b64encode(piece).decode("ascii")
        try:
            await self.call(t, ops.MODELS_RECEIVE_CHUNK, WriteParams(id=self.id, file=f.name, offset=have, data=encoded))
        except LlorchError as e:
            self.fail(t, e)
            return
        self.have[t][f.name] = have + len(piece)
        self.results[t].bytes_sent += len(piece)

    async def copy_file(self, f: ModelFile) -> None:
        targets = [t for t in self.active() if self.have[t].get(f.name, 0) < f.size]
        if targets:
            offset = min(self.have[t].get(f.name, 0) for t in targets)
            self.reporter.send("downloading", file=f.name, force=True)
            pending: asyncio.Task[tuple[bytes, str]] | None = asyncio.create_task(self.read(f, offset))
            try:
                while pending is not None:
                    data, encoded = await pending
                    nxt = offset + len(data)
                    # Read ahead while the targets write: source and targets work at the same time.
                    pending = asyncio.create_task(self.read(f, nxt)) if nxt < f.size else None
                    await asyncio.gather(*(self.write(t, f, offset, data, encoded) for t in self.active()))
                    self.reporter.add_bytes(len(data))
                    offset = nxt
                    if not self.active():
                        break
            finally:
                if pending is not None:
                    pending.cancel()
        await asyncio.gather(*(self.verify(t, f) for t in self.active()))
        self.reporter.file_done(f.name)

    async def verify(self, t: str, f: ModelFile) -> None:
        try:
            await self.call(t, ops.MODELS_RECEIVE_FILE, FileParams(id=self.id, file=f.name))
        except LlorchError as e:
            self.fail(t, e)

    async def commit(self) -> None:
        async def one(t: str) -> None:
            try:
                self.results[t].model = await self.call(t, ops.MODELS_RECEIVE_COMMIT, IdParams(id=self.id))
                self.results[t].ok = True
            except LlorchError as e:
                self.fail(t, e)

        await asyncio.gather(*(one(t) for t in self.active()))


async def copy_model(config: Config, model_id: str, source: str, targets: list[str], *, force: bool = False,
                     chunk: int = DEFAULT_CHUNK, on_event: CopyProgress | None = None,
                     tamper: Tamper | None = None, fleet: Fleet | None = None, route: Route = "auto",
                     rate_limit_bps: float | None = None, lan_address: str | None = None) -> CopyResult:
    """Copy with a fleet of its own, or over a live one (the dashboard's sessions), which is left open.
    `route`: "lan" (each target fetches from the source's mirror on the source's LAN address: `lan_address`,
    else the source pool's configured one), "direct" (each target fetches from the source's mirror through
    forwarded ports), "relay" (chunks through this machine's agent sessions), "auto" (lan when the source
    has a LAN address every target reaches, else direct, else relay when the direct route cannot be opened:
    an older agent, an sshd that forbids forwarding; `route_note` says why). `rate_limit_bps` caps each
    file's stream on the lan and direct routes. `tamper` (tests) changes relayed chunks, so it implies the
    relay."""
    targets = list(dict.fromkeys(targets))
    if tamper is not None:
        route = "relay"
    if not targets or source in targets:
        raise LlorchError(ErrorCode.BAD_REQUEST, "copy needs --to pools other than the --from pool",
                          "e.g. llorch models copy ID --from gpu1 --to gpu2 --to gpu3")
    own = fleet is None
    fleet = fleet or Fleet(config)
    try:
        for name in (source, *targets):
            fleet.client(name)  # an unknown pool is an error before anything connects
        up = await fleet.start([source, *targets]) if own else \
            {n: fleet.state(n).state == "online" or await fleet.connect(n) for n in (source, *targets)}
        down = [n for n, ok in up.items() if not ok]
        if source in down:
            st = fleet.state(source)
            raise LlorchError(ErrorCode.UNREACHABLE, f"source pool {source} is offline: {st.error}",
                              st.hint or f"llorch pool doctor --host {source}")
        entry = await fleet.api(source).models.manifest(IdParams(id=model_id), timeout=CALL_TIMEOUT_S)
        total = sum(f.size for f in entry.files)

        def emit(_event: str, progress: DownloadProgress) -> None:
            if on_event is not None:
                on_event(progress)

        reporter = ProgressReporter(emit, model_id, endpoint=f"pool {source}")
        job = _Copy(fleet, model_id, source, targets, chunk, reporter, tamper)
        for t in down:
            st = fleet.state(t)
            job.fail(t, LlorchError(ErrorCode.UNREACHABLE, f"target pool {t} is offline: {st.error}", st.hint))
        async with contextlib.AsyncExitStack() as stack:
            direct, via, note = await _open(stack, job, entry, route, force, _lan_address(config, source, lan_address),
                                            rate_limit_bps)
            active = job.active()
            used = ("lan" if direct.lan else "direct") if direct else "relay"
            used = used if active else "none"  # none: nothing needed sending
            already = min((sum(job.have[t].values()) for t in active), default=total)
            reporter.plan(len(entry.files), total, already)
            reporter.send("downloading", file=entry.files[0].name, force=True)
            for f in entry.files:
                if not job.active():
                    break
                await (fetch_file(job, direct, f) if direct else job.copy_file(f))
            await job.commit()
        reporter.send("done", force=True)
        return CopyResult(model=model_id, source=source, via=via, bytes_total=total, bytes_read=job.bytes_read,
                          targets=list(job.results.values()), route=used,
                          route_note=note)
    finally:
        if own:
            await fleet.close()


def _lan_address(config: Config, source: str, given: str | None) -> str | None:
    if given is not None:
        try:
            return check_lan_address(given)
        except ValueError as e:
            raise LlorchError(ErrorCode.BAD_REQUEST, str(e), "e.g. --lan-address 192.168.1.20") from None
    pool = config.pool(source)
    return pool.lan_address if pool else None


async def _open(stack: contextlib.AsyncExitStack, job: _Copy, entry: ModelEntry, route: Route, force: bool,
                lan: str | None, rate_limit_bps: float | None) -> tuple[DirectRoute | None, str, str | None]:
    """Open the route to use, in auto's order (lan, direct, relay): (the mirror route or None for the relay,
    the origin's `via`, why auto passed over a route). Targets that already hold the files need none."""
    if route == "lan" and lan is None:
        raise LlorchError(ErrorCode.BAD_REQUEST, f"pool {job.source} has no LAN address for --route lan",
                          f"set lan_address in pool {job.source}'s config, or pass --lan-address IP")
    tries = {"auto": ["lan", "direct"] if lan else ["direct"], "lan": ["lan"], "direct": ["direct"]}.get(route, [])
    vias = {"lan": LAN_VIA, "direct": DIRECT_VIA}
    via = vias[tries[0]] if tries else RELAY_VIA

    async def begin(how: str) -> None:  # again when the route changes: the origin records how the bytes came
        nonlocal via
        if how != via or not job.have:
            via = how
            await job.begin(entry, ModelOrigin(kind="copy", pool=job.source, via=via), force)

    await begin(via)
    notes: list[str] = []
    for kind in tries:
        if not job.active():
            break
        try:
            opened = open_lan_route(job.fleet, job.source, job.id, job.active(), lan, entry.files[0], rate_limit_bps) \
                if kind == "lan" and lan else open_route(job.fleet, job.source, job.id, job.active(), rate_limit_bps)
            direct = await stack.enter_async_context(opened)
        except LlorchError as e:
            if route != "auto":
                raise
            notes.append(f"the {kind} route could not be used ({e.message})")
            continue
        await begin(vias[kind])
        return direct, via, "; ".join([*notes, "fetched through ports forwarded here"]) if notes else None
    if notes:
        notes.append("relayed through this machine")
        await begin(RELAY_VIA)
    return None, via, "; ".join(notes) or None
