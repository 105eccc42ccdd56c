"""The agent's and the supervisor's side of the warm worker template (`llorch_worker.template`).

One template per pool state dir, reached on an abstract Unix socket whose name derives from the
user and the state dir (the template checks the caller's uid). The agent starts it lazily on the
first spawn (`ensure`), a fresh one replaces it when the worker package changed, and the
supervisor asks it to fork each worker (`fork_worker`), then waits on the same connection for the
worker's exit status. Whenever a warm start is not possible, the reason is returned so the caller
can say so and exec the worker the plain way.

Standard library only (and child_env, itself stdlib): the supervisor imports this and must stay a few MB.
The template gets the same allow-listed environment as every torch process the agent starts
(`child_env`): the agent's secrets never reach it, nor the workers it forks.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from llorch_tui.pool.child_env import child_env

ENV_SWITCH = "LLORCH_WORKER_TEMPLATE"  # off|0|false|no: always exec (also settable in a pool's `env`)
ENV_IDLE = "LLORCH_WORKER_TEMPLATE_IDLE_S"
DEFAULT_IDLE_S = 900.0
START_TIMEOUT_S = 120.0  # the template's imports: seconds on a quiet machine, more on a loaded one
REPLY_TIMEOUT_S = 10.0
LOG_NAME = "template.log"
# Room in the template's environment block for a forked worker's id (llorch_worker.template.set_worker_id):
# /proc/PID/environ shows the block a process was exec'd with, and sweep reads a worker's id there.
ID_PLACEHOLDER = {"LLORCH_WORKER_ID": "-" * 256}
# Templates this process started: reaped so a long-lived agent leaves no zombie behind.
_STARTED: list[subprocess.Popen[bytes]] = []


def socket_name(state_dir: Path) -> str:
    digest = hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:20]
    return f"llorch-template-{os.getuid()}-{digest}"


def disabled_reason(worker_cmd: list[str]) -> str | None:
    """Why this pool execs workers instead of forking them from a template, or None."""
    if os.environ.get(ENV_SWITCH, "on").strip().lower() in ("0", "off", "false", "no"):
        return f"warm starts are switched off ({ENV_SWITCH}={os.environ[ENV_SWITCH]})"
    if not sys.platform.startswith("linux"):
        return f"forking a warm template is not safe on {sys.platform} (Metal and the Objective-C runtime)"
    if os.environ.get("LLORCH_WORKER_COMMAND"):
        return "a custom worker command is set (LLORCH_WORKER_COMMAND): it is run as given"
    if template_python(worker_cmd) is None:
        return f"cannot tell which Python runs {shlex.join(worker_cmd)}"
    return None


def template_python(worker_cmd: list[str]) -> str | None:
    """The interpreter that runs the worker: `python -m llorch_worker.cli`, or the shebang of `llorch-worker`."""
    if len(worker_cmd) >= 3 and worker_cmd[1] == "-m":
        return worker_cmd[0]
    if len(worker_cmd) == 1:
        try:
            with open(worker_cmd[0], "rb") as fh:
                first = fh.readline(4096).decode(errors="replace")
        except OSError:
            return None
        if first.startswith("#!"):
            words = first[2:].split()
            return words[0] if len(words) == 1 and os.path.isabs(words[0]) else None
    return None


def _connect(name: str, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect("\0" + name)
    except OSError:
        sock.close()
        raise
    return sock


def _read_line(sock: socket.socket) -> dict[str, Any] | None:
    buf = b""
    while b"\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    doc = json.loads(buf.split(b"\n", 1)[0])
    return doc if isinstance(doc, dict) else None


def request(name: str, doc: dict[str, Any], timeout: float = REPLY_TIMEOUT_S) -> dict[str, Any] | None:
    """One request, one answer; None when no template listens under that name."""
    try:
        sock = _connect(name, timeout)
    except OSError:
        return None
    with sock:
        try:
            sock.sendall(json.dumps(doc).encode() + b"\n")
            return _read_line(sock)
        except (OSError, ValueError):
            return None


def ping(state_dir: Path) -> dict[str, Any] | None:
    return request(socket_name(state_dir), {"op": "ping"})


def stop(state_dir: Path) -> bool:
    """Ask the pool's template to drain: it takes no more spawns and exits after its last worker."""
    return request(socket_name(state_dir), {"op": "stop"}) is not None


def reap() -> None:
    for proc in list(_STARTED):
        if proc.poll() is not None:
            _STARTED.remove(proc)


def ensure(state_dir: Path, logs_dir: Path, worker_cmd: list[str]) -> tuple[str | None, str | None]:
    """The socket name of a ready, current template for this pool (started if need be), or (None, why not)."""
    why = disabled_reason(worker_cmd)
    if why is not None:
        return None, why
    reap()
    name = socket_name(state_dir)
    doc = request(name, {"op": "ping"})
    if doc is not None and doc.get("ok"):
        return name, None
    # None: no template yet (or it idled out). stale: it drains by itself and has freed the name.
    started = _start(name, state_dir, logs_dir, template_python(worker_cmd) or sys.executable)
    if started.get("ok"):
        return name, None
    doc = request(name, {"op": "ping"})  # lost a start race to another agent: theirs serves us too
    if doc is not None and doc.get("ok"):
        return name, None
    return None, f"the worker template did not start: {started.get('error')} (see {logs_dir / LOG_NAME})"


def _start(name: str, state_dir: Path, logs_dir: Path, python: str) -> dict[str, Any]:
    idle = os.environ.get(ENV_IDLE) or str(DEFAULT_IDLE_S)
    argv = [python, "-m", "llorch_worker.template", "--socket", name, "--state-dir", str(state_dir),
            "--idle-s", idle]
    logs_dir.mkdir(parents=True, exist_ok=True)
    r, w = os.pipe()
    try:
        with open(logs_dir / LOG_NAME, "ab") as log:
            # Its own session, outliving this agent (a one-shot CLI spawn leaves its worker running,
            # and the template is that worker's parent). Never the agent's stdio: that is the protocol.
            proc = subprocess.Popen([*argv, "--ready-fd", str(w)], stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(w,),
                                    env=child_env({"LLORCH_STATE_DIR": str(state_dir), **ID_PLACEHOLDER}),
                                    cwd=str(state_dir))
    except OSError as exc:
        os.close(r)
        return {"ok": False, "error": f"cannot run {python}: {exc}"}
    finally:
        os.close(w)
    _STARTED.append(proc)
    with os.fdopen(r, "rb") as ready:
        deadline = time.monotonic() + START_TIMEOUT_S
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([ready], [], [], left)[0]:
                proc.kill()
                return {"ok": False, "error": f"not ready after {START_TIMEOUT_S:.0f}s"}
            chunk = os.read(ready.fileno(), 4096)
            if not chunk:
                return {"ok": False, "error": f"exited with code {proc.wait()} while importing"}
            line += chunk
    try:
        doc = json.loads(line)
    except ValueError:
        return {"ok": False, "error": f"unreadable ready line {line[:200]!r}"}
    return doc if isinstance(doc, dict) else {"ok": False, "error": "unreadable ready line"}


def fork_worker(name: str, argv: list[str], env: dict[str, str], cwd: str, stdio: tuple[int, int, int],
                extra_fds: tuple[int, ...] = ()) -> tuple[socket.socket | None, int | None, str | None]:
    """Ask the template for a worker: (connection to await its exit on, its pid, None) or (None, None, why not).

    `extra_fds` (at most one: the worker's listening socket) reach the worker too; its argv names
    it as `--listen-fd N` with this process's number, which the template rewrites to the child's."""
    try:
        sock = _connect(name, REPLY_TIMEOUT_S)
    except OSError as exc:
        return None, None, f"no worker template answers ({exc})"
    try:
        payload = json.dumps({"op": "spawn", "argv": argv, "env": env, "cwd": cwd}).encode() + b"\n"
        socket.send_fds(sock, [payload], [*stdio, *extra_fds])
        doc = _read_line(sock)
    except (OSError, ValueError) as exc:
        sock.close()
        return None, None, f"the worker template failed ({exc})"
    if doc is None or not doc.get("ok") or not isinstance(doc.get("pid"), int):
        sock.close()
        return None, None, f"the worker template refused: {(doc or {}).get('error', 'no answer')}"
    sock.settimeout(None)  # the exit may come days later
    return sock, doc["pid"], None


def await_exit(sock: socket.socket) -> dict[str, Any] | None:
    """Block until the template reports the worker's exit: {returncode, signal}; None if the template is gone."""
    try:
        doc = _read_line(sock)
    except (OSError, ValueError):
        doc = None
    finally:
        sock.close()
    exit_doc = (doc or {}).get("exit")
    return exit_doc if isinstance(exit_doc, dict) else None
