"""The stdio agent answers every line, however hostile, and keeps serving the real requests around it."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

from agent_helpers import RawAgent

BIG = 20 * 1024 * 1024  # over the agent's 16 MiB line limit


def hostile_lines(n: int, seed: int = 10) -> list[tuple[bytes, str]]:
    """(line, the id its error must carry: the line's own id when one is visible in it, else "?")."""
    rnd = random.Random(seed)
    out: list[tuple[bytes, str]] = []
    for i in range(n):
        rid = f"h{i}"
        kind = i % 12
        if kind == 0:  # nested far deeper than any parser's recursion limit
            depth = rnd.randint(5_000, 200_000)
            line, want = (b'{"v":1,"id":"%s","op":"agent.ping","params":{"a":' % rid.encode()
                          + b"[" * depth + b"]" * depth + b"}}"), rid
        elif kind == 1:
            line, want = b"[" * rnd.randint(1_000, 100_000), "?"
        elif kind == 2:  # invalid UTF-8 inside and outside strings
            line, want = b'{"v":1,"id":"%s","op":"agent.\xff\xfeping"}' % rid.encode(), rid
        elif kind == 3:
            line, want = bytes(rnd.choice(range(128, 256)) for _ in range(rnd.randint(1, 300))), "?"
        elif kind == 4:  # wrong types
            line, want = json.dumps({"v": "one", "id": rid, "op": 5}).encode(), rid
        elif kind == 5:
            line, want = json.dumps({"v": 1, "id": rid, "op": "agent.ping", "params": [1, 2]}).encode(), rid
        elif kind == 6:  # a real op with nonsense params: the op's own validation answers
            line, want = json.dumps({"v": 1, "id": rid, "op": "models.register",
                                     "params": {"id": {"x": [1]}, "backends": 7}}).encode(), rid
        elif kind == 7:
            line, want = json.dumps({"v": 1, "id": rid, "op": "no.such.op"}).encode(), rid
        elif kind == 8:  # truncated JSON, and NUL bytes
            line, want = b'{"v":1,"id":"%s","op":"agent.ping","params":{"x":' % rid.encode(), rid
        elif kind == 9:
            line, want = b"\x00" * rnd.randint(1, 64) + b"{}", "?"
        elif kind == 10:  # random printable junk (never a newline)
            line = bytes(rnd.choice(b'{}[]":,0123456789abcnul ') for _ in range(rnd.randint(1, 200)))
            want = "?"
            if not line.strip():
                line = b"@"
        else:  # a JSON value that is not an object
            line, want = rnd.choice([b"42", b'"text"', b"null", b"true", b"[]"]), "?"
        out.append((line, want))
    return out


async def test_agent_survives_1000_hostile_lines_between_real_requests(tmp_path: Path) -> None:
    hostile = hostile_lines(1_200)
    # three lines over the limit, one of them naming its id in its first bytes
    hostile += [(b'{"v":1,"id":"big0","op":"agent.ping","params":{"x":"' + b"A" * BIG + b'"}}', "big0"),
                (b"B" * BIG, "?"),
                (b'{"v":1,"id":"big2","op":"agent.ping","params":{"x":' + b"[" * BIG + b"}}", "big2")]
    random.Random(3).shuffle(hostile)
    agent = await RawAgent.start(tmp_path / "state")
    try:
        await agent.send("ticker", "agent.ticks", {"count": 3, "interval_s": 0.01})
        real: list[str] = []

        async def writer() -> None:
            for i, (line, _) in enumerate(hostile):
                await agent.send_raw(line + b"\n")
                if i % 10 == 0:
                    rid = f"real-{i}"
                    real.append(rid)
                    await agent.send(rid, "models.list" if i % 100 == 0 else "agent.ping")

        errors: list[str] = []
        results: dict[str, Any] = {}
        write = asyncio.ensure_future(writer())
        expected_replies = len(hostile) + len(range(0, len(hostile), 10)) + 1  # + the ticker's result
        while len(errors) + len(results) < expected_replies:
            msg = await agent.read(timeout=300)
            if msg["type"] == "error":
                errors.append(msg["id"])
                assert msg["error"]["code"] in ("bad_request", "unknown_op"), msg
                assert msg["error"]["message"], msg
            elif msg["type"] == "result":
                results[msg["id"]] = msg["result"]
        await write
        assert sorted(errors) == sorted(want for _, want in hostile)
        assert set(results) == {*real, "ticker"}
        assert all(results[r]["pool_id"] == "test" for r in real if results[r].get("pool_id"))
        assert agent.proc.returncode is None
        await agent.send("after", "agent.ping")
        assert (await agent.read())["result"]["pool_id"] == "test"
    finally:
        assert await agent.close() == 0


# An agent with one extra op whose thread never looks at its cancel flag (a stuck read, a hung
# library call): the real service loop, stdin/stdout as in `serve --stdio`.
STUCK_AGENT = """
import asyncio, sys, threading
from pathlib import Path
from llorch_tui.pool.ops import AgentSettings, op
from llorch_tui.pool.service import run_stdio_service
from llorch_tui.protocol.ops import OpRef, TicksResult
from llorch_tui.protocol.params import NoParams

@op(OpRef("test.stuck", NoParams, TicksResult))
async def stuck(ctx, p):
    await asyncio.to_thread(threading.Event().wait)  # never returns, never polls ctx.cancelled

run_stdio_service(AgentSettings(state_dir=Path(sys.argv[1]), pool_id="test"))
"""


async def test_agent_exits_after_eof_even_when_an_op_ignores_its_cancel(tmp_path: Path) -> None:
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STUCK_AGENT, str(tmp_path / "state"), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    agent = RawAgent(proc)
    try:
        assert (await agent.read())["type"] == "hello"
        await agent.send("s", "test.stuck")
        await agent.send("p", "agent.ping")
        assert (await agent.read())["id"] == "p"  # the stuck op holds a thread, not the service
        # EOF: the stuck op is cancelled, its thread ignores that; the agent leaves after its grace
        # (EXIT_GRACE_S) instead of waiting for the thread for ever
        assert await agent.close() == 0
        assert b"exiting without them" in await proc.stderr.read()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
