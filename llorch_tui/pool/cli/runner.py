"""Run a CommandSpec: params from argv, call through an executor, render a table or JSON.

With --json, streamed events are JSON Lines ({"event":..,"data":..}) followed by exactly one
result document; a failure is one JSON error document {"error":{code,message,hint}} and exit 1.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any, Awaitable, Callable

from rich.console import Console

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool.cli.spec import CommandSpec
from llorch_tui.protocol.ops import OpCaller

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def print_error(err: LlorchError, as_json: bool, console: Console | None = None) -> None:
    if as_json:
        print(json.dumps({"error": err.to_doc().model_dump(mode="json")}), flush=True)
        return
    con = console or Console(stderr=True)
    con.print(f"[bold red]error:[/] {err.message}", highlight=False)
    if err.hint:
        con.print(f"[yellow]hint:[/] {err.hint}", highlight=False)


async def run_spec(spec: CommandSpec, args: Any, executor: OpCaller) -> int:
    as_json = bool(getattr(args, "json", False))
    console = Console()
    renderer = spec.events(console) if (spec.events and not as_json) else None

    assert spec.op is not None
    render_event = spec.op.event_sink(renderer) if renderer is not None else None

    def on_event(event: str, data: dict[str, Any]) -> None:
        if as_json:  # the wire document as it came
            print(json.dumps({"event": event, "data": data}), flush=True)
        elif render_event is not None:
            render_event(event, data)

    try:
        result = await executor.call(spec.op.name, spec.to_params(args), on_event)
        typed = spec.op.parse(result)
    except LlorchError as err:
        if renderer is not None:
            renderer.close()
        print_error(err, as_json)
        return EXIT_ERROR
    if renderer is not None:
        renderer.close()
    if as_json:
        print(json.dumps(result, default=str), flush=True)
    elif spec.render is not None:
        spec.render(typed, console)
    else:
        console.print_json(json.dumps(result, default=str))
    return spec.exit_code(typed) if spec.exit_code is not None else EXIT_OK


async def _cancel_on_sigterm(coro_factory: Callable[[], Awaitable[int]]) -> int:
    """SIGTERM cancels the command like Ctrl-C does, so ops run their cleanup (a half-spawned worker is killed)."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await coro_factory()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def run_sync(coro_factory: Callable[[], Awaitable[int]], as_json: bool) -> int:
    try:
        return asyncio.run(_cancel_on_sigterm(coro_factory))
    except KeyboardInterrupt:
        print_error(LlorchError(ErrorCode.CANCELLED, "interrupted"), as_json)
        return 130
    except asyncio.CancelledError:
        print_error(LlorchError(ErrorCode.CANCELLED, "terminated (SIGTERM)"), as_json)
        return 143
    except LlorchError as err:
        print_error(err, as_json)
        return EXIT_ERROR


def die(message: str, hint: str | None = None) -> None:
    print_error(LlorchError(ErrorCode.BAD_REQUEST, message, hint), False)
    sys.exit(EXIT_USAGE)
