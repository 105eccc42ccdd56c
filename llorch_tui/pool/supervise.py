"""`python -m llorch_tui.pool.supervise`: the detached parent of one worker, so its exit is never lost.

The agent starts this in a new session and returns; this process runs the worker as its child
in a process group of its own, forwards SIGTERM/SIGINT/SIGHUP to that group, and when the worker
ends writes `logs/<id>.exit` (returncode, signal, time) for `worker list` to report. It imports
nothing heavy (no torch, no pydantic): it costs a few MB next to a worker.

    python -m llorch_tui.pool.supervise --exit-file F [--pid-fd N] -- llorch-worker ARGS...

With --pid-fd, the worker's pid is written to that fd as one line; the fd stays open until this
process exits, so the agent sees EOF exactly when the worker is gone.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _write_exit(path: Path, doc: dict[str, object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)  # atomic: a reader sees the whole document or none


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m llorch_tui.pool.supervise")
    p.add_argument("--exit-file", required=True)
    p.add_argument("--pid-fd", type=int)
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        p.error("no command to supervise")
    exit_file = Path(args.exit_file)
    pid_out = os.fdopen(args.pid_fd, "w") if args.pid_fd is not None else None
    child: subprocess.Popen[bytes] | None = None
    pending: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child is None:
            pending.append(signum)  # arrived before the worker exists: deliver right after it starts
            return
        try:
            os.killpg(child.pid, signum)
        except ProcessLookupError:
            pass

    # Handlers first: a SIGTERM in the start-up window must not kill us and orphan the worker.
    for sig in FORWARDED:
        signal.signal(sig, forward)
    try:
        # Its own process group: signals reach the worker and whatever it forks, never this supervisor twice.
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, process_group=0)
    except OSError as exc:
        print(f"LLORCH_WORKER_ERROR {json.dumps({'code': 'internal', 'message': f'cannot start {cmd[0]}: {exc}'})}",
              file=sys.stderr, flush=True)
        _write_exit(exit_file, {"worker_pid": None, "returncode": 127, "signal": None, "time": time.time(),
                                "error": str(exc)})
        if pid_out is not None:
            pid_out.write("error\n")
            pid_out.close()
        return 127
    for signum in pending:
        forward(signum, None)
    if pid_out is not None:
        pid_out.write(f"{child.pid}\n")
        pid_out.flush()
    rc = child.wait()
    sig_name = signal.Signals(-rc).name if rc < 0 else None
    _write_exit(exit_file, {"worker_pid": child.pid, "returncode": rc, "signal": sig_name, "time": time.time()})
    if pid_out is not None:
        pid_out.close()
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main())
