"""`llorch pool <command> --host H`: the llorch-pool command tree, executed on a pool through PoolClient.

Same CommandSpecs as `llorch-pool` (arguments, params, tables, progress bars, --json); only the
executor differs: a PoolClient over the pool's transport instead of the in-process op registry.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from rich.console import Console

from llorch_tui.client import PoolClient
from llorch_tui.config import Config, PoolConfig
from llorch_tui.errors import LlorchError
from llorch_tui.pool.cli.runner import EXIT_ERROR, EXIT_OK, print_error, run_spec
from llorch_tui.pool.cli.spec import CommandSpec
from llorch_tui.protocol import ops
from llorch_tui.protocol.ops import EventSink
from llorch_tui.protocol.workers import WorkerRecord



class RemoteExecutor:
    """The runner's Executor over a PoolClient; closes port forwards of workers it stops."""

    def __init__(self, client: PoolClient) -> None:
        self.client = client

    async def call(self, op_name: str, params: dict[str, Any] | None = None, on_event: EventSink | None = None,
                   timeout: float | None = None) -> Any:
        result = await self.client.call(op_name, params, on_event, timeout)
        if op_name == ops.WORKERS_STOP.name:
            await close_forwards_of(self.client, ops.WORKERS_STOP.parse(result))
        return result


async def close_forwards_of(client: PoolClient, stopped: list[WorkerRecord]) -> None:
    """A stopped worker's port must not stay forwarded: a later worker may take the same port."""
    close = getattr(client.transport, "close_forward", None)
    if close is None:
        return
    for rec in stopped:
        await close(rec.port)


async def run_remote(spec: CommandSpec, args: Any, pool: PoolConfig) -> int:
    client = PoolClient(pool)
    try:
        return await run_spec(spec, args, RemoteExecutor(client))
    finally:
        await client.close()


async def run_all(spec: CommandSpec, args: Any, config: Config) -> int:
    """One command on every configured pool at once; a dead pool is reported, the others still answer."""
    as_json = bool(getattr(args, "json", False))
    assert spec.op is not None
    op = spec.op
    clients = [PoolClient(p) for p in config.pools]
    try:
        results = await asyncio.gather(*(c.call(op.name, spec.to_params(args)) for c in clients),
                                       return_exceptions=True)
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    failed = False
    if as_json:
        doc: dict[str, Any] = {}
        for c, r in zip(clients, results):
            if isinstance(r, LlorchError):
                doc[c.name] = {"error": r.to_doc().model_dump(mode="json")}
                failed = True
            elif isinstance(r, BaseException):
                raise r
            else:
                doc[c.name] = r
        print(json.dumps(doc, default=str), flush=True)
        return EXIT_ERROR if failed else EXIT_OK
    console = Console()
    for c, r in zip(clients, results):
        console.rule(f"[bold]pool {c.name}[/]" + (f" [dim]({c.pool.host})[/]" if c.pool.host else ""))
        if isinstance(r, LlorchError):
            failed = True
            print_error(r, False, console)
        elif isinstance(r, BaseException):
            raise r
        elif spec.render is not None:
            try:
                spec.render(op.parse(r, f"pool {c.name}: "), console)
            except LlorchError as exc:
                failed = True
                print_error(exc, False, console)
        else:
            console.print_json(json.dumps(r, default=str))
    return EXIT_ERROR if failed else EXIT_OK
