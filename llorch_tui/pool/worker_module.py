"""Run a `python -m llorch_worker.<module> ... --json` subprocess from an op: the agent's way to do torch work.

The child never gets the agent's stdin (under `serve --stdio` that is the protocol channel), dies
with a cancelled op, and its result is the last stdout line as JSON. A failure becomes a
LlorchError carrying the child's own `LLORCH_WORKER_ERROR` classification when it printed one.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from llorch_tui.protocol.events import PROGRESS, ModelStage
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool.child_env import child_env
from llorch_tui.pool.ops import OpContext
from llorch_tui.pool.worker_registry import error_in_lines
from llorch_tui.protocol.catalog import WrittenCheckpoint

STDERR_TAIL = 2000


def require_worker_package() -> None:
    if importlib.util.find_spec("llorch_worker") is None:
        raise LlorchError(ErrorCode.AGENT_MISSING, "the worker package (llorch_worker) is not installed on this pool",
                          "install it next to the agent: pip install -e ./worker (or pip install llorch-worker)")


async def run_worker_module(ctx: OpContext, module: str, args: list[str], what: str, hint: str,
                            started: ModelStage | None = None) -> WrittenCheckpoint:
    """Run `python -m llorch_worker.<module> ARGS --json`; `started` is emitted as progress with the child's pid."""
    require_worker_package()
    argv = [sys.executable, "-m", f"llorch_worker.{module}", *args, "--json"]
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env=child_env())
    if started is not None:
        ctx.emit(PROGRESS, started.model_copy(update={"pid": proc.pid}))
    try:
        stdout, stderr = await proc.communicate()
    finally:
        if proc.returncode is None:  # cancelled: the child must not outlive the op
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        tail = stderr.decode(errors="replace").strip()[-STDERR_TAIL:]
        err = error_in_lines(tail.splitlines())
        if err is not None:
            code = err.get("code", "")
            known = code in {v for k, v in vars(ErrorCode).items() if k.isupper()}
            raise LlorchError(code if known else ErrorCode.INTERNAL, f"{what} failed: {err.get('message')}", hint,
                              stderr=tail)
        last = tail.splitlines()[-1] if tail else f"exit status {proc.returncode}"
        raise LlorchError(ErrorCode.INTERNAL, f"{what} failed: {last}", hint, stderr=tail)
    try:
        return WrittenCheckpoint.model_validate_json(stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):  # not JSON, or not a checkpoint's description (a ValidationError)
        raise LlorchError(ErrorCode.INTERNAL, f"llorch_worker.{module} printed no JSON description",
                          "the worker package may be older than the agent; reinstall both") from None
