"""`python -m llorch_tui.pool.supervise`: the detached parent of one worker, so its exit is never lost.

The agent starts this in a new session and returns; this process runs the worker as its child
in a process group of its own, forwards SIGTERM/SIGINT/SIGHUP to that group, and when the worker
ends writes `logs/<id>.exit` (returncode, signal, time) for `worker list` to report. It imports
nothing heavy (no torch, no pydantic): it costs a few MB next to a worker.

    python -m llorch_tui.pool.supervise --exit-file F [--pid-fd N] [--listen-fd L]
                                        [--template NAME --command-words K] -- llorch-worker ARGS...

With --pid-fd, the worker's pid and how it started are written to that fd as one line
(`PID`, `PID fork`, or `PID exec WHY` when a fork was asked for and failed); the fd stays open until this process exits, so the
agent sees EOF exactly when the worker is gone. With --template, the worker is forked by the
pool's warm template (its argv is the command minus its first K words) and the template reports
its exit status here; if the template cannot, the command is exec'd as usual and the log says why.
With --listen-fd, that inherited fd (the worker's listening socket, bound by the agent) is handed
on to the worker, exec'd or forked, and closed here once the worker has it.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from llorch_tui.pool import template_client

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _write_exit(path: Path, doc: dict[str, object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)  # atomic: a reader sees the whole document or none


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m llorch_tui.pool.supervise")
    p.add_argument("--exit-file", required=True)
    p.add_argument("--pid-fd", type=int)
    p.add_argument("--template", help="abstract socket name of the pool's warm worker template")
    p.add_argument("--command-words", type=int, default=1, help="words of the command before the worker's argv")
    p.add_argument("--listen-fd", type=int, help="an inherited fd to hand on to the worker (its listening socket)")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        p.error("no command to supervise")
    exit_file = Path(args.exit_file)
    pid_out = os.fdopen(args.pid_fd, "w") if args.pid_fd is not None else None
    worker_pid: int | None = None
    pending: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        if worker_pid is None:
            pending.append(signum)  # arrived before the worker exists: deliver right after it starts
            return
        try:
            os.killpg(worker_pid, signum)
        except ProcessLookupError:
            pass

    # Handlers first: a SIGTERM in the start-up window must not kill us and orphan the worker.
    for sig in FORWARDED:
        signal.signal(sig, forward)
    mode, note = "exec", ""
    conn = child = None
    if args.template:
        with open(os.devnull, "rb") as devnull:
            conn, worker_pid, why = template_client.fork_worker(
                args.template, cmd[args.command_words:], dict(os.environ), os.getcwd(),
                (devnull.fileno(), sys.stdout.fileno(), sys.stderr.fileno()),
                () if args.listen_fd is None else (args.listen_fd,))
        if conn is not None:
            mode = "fork"
        else:
            note = " ".join(str(why).split())
            print(f"# llorch-pool: warm start unavailable: {note}; starting the worker the plain way",
                  file=sys.stderr, flush=True)
    if conn is None:
        try:
            # Its own process group: signals reach the worker and whatever it forks, never this supervisor twice.
            child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, process_group=0,
                                     pass_fds=() if args.listen_fd is None else (args.listen_fd,))
        except OSError as exc:
            print(f"LLORCH_WORKER_ERROR {json.dumps({'code': 'internal', 'message': f'cannot start {cmd[0]}: {exc}'})}",
                  file=sys.stderr, flush=True)
            _write_exit(exit_file, {"worker_pid": None, "returncode": 127, "signal": None, "time": time.time(),
                                    "error": str(exc)})
            if pid_out is not None:
                pid_out.write("error\n")
                pid_out.close()
            return 127
        worker_pid = child.pid
    if args.listen_fd is not None:
        os.close(args.listen_fd)  # the worker's now: the port is freed when the worker ends, not when we do
    for signum in pending:
        forward(signum, None)
    if pid_out is not None:
        # A plain exec keeps the original one-word line.
        pid_out.write((f"{worker_pid} {mode} {note}".rstrip() if mode == "fork" or note else str(worker_pid)) + "\n")
        pid_out.flush()
    doc: dict[str, object] = {"worker_pid": worker_pid, "start": mode, "time": 0.0}
    if child is not None:
        rc: int | None = child.wait()
    else:
        assert conn is not None and worker_pid is not None
        status = template_client.await_exit(conn)
        if status is None:  # the template died first: the worker's status is lost with it; wait for its end
            _wait_gone(worker_pid)
            rc = None
            doc["error"] = "the worker template ended before the worker did: exit status unknown"
        else:
            rc = status.get("returncode") if isinstance(status.get("returncode"), int) else None
    sig_name = signal.Signals(-rc).name if rc is not None and rc < 0 else None
    _write_exit(exit_file, {**doc, "returncode": rc, "signal": sig_name, "time": time.time()})
    if pid_out is not None:
        pid_out.close()
    if rc is None:
        return 1
    return rc if rc >= 0 else 128 - rc


def _wait_gone(pid: int) -> None:
    """Until `pid` ends (a pidfd turns readable): not our child, so waitpid cannot tell us."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return  # already gone
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
