"""`python -m llorch_worker.template`: a warm parent that forks a fresh worker per spawn.

Importing torch and transformers costs a worker most of its start-up (seconds before it reads a
weight). This process pays it once per pool: it imports the worker code and its heavy
dependencies, touches no GPU and starts no thread, then waits on a Unix socket. For each spawn it
forks; the child becomes its own session, takes the caller's stdin/stdout/stderr (passed over the
socket), environment and working directory, and runs `llorch-worker` as if exec'd: it picks its
device, loads, binds and reports ready exactly as a cold worker does. A child is a separate
process (own pid, memory, exit status); a crash kills only that child.

The template stays the parent of its workers (only a parent learns an exit status) and sends each
spawn's caller the child's exit status over the same connection. It refuses a spawn, so the caller
falls back to a plain exec, when the worker package changed on disk since it started (it then stops
listening and exits once its last worker has ended; the agent starts a fresh one), when the
caller's import-relevant environment differs from its own, or when it is not single-threaded.
It exits by itself after `--idle-s` seconds with no worker and no request.

Wire (one JSON line each way; the spawn request carries three or four fds by SCM_RIGHTS):
    {"op": "ping"}                                      -> {"ok": true, "pid", "fingerprint", "children"}
    {"op": "spawn", "argv", "env", "cwd"} + fds 0,1,2[,L] -> {"ok": true, "pid"} ... {"exit": {"returncode", "signal"}}
      (L: the worker's listening socket, when argv has `--listen-fd`; the child gets it under the
      number its argv then names)
    {"op": "stop"}                                      -> {"ok": true}  (drain: no new spawns, exit when idle)
    a refusal:                                          -> {"ok": false, "error", "stale": bool}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

MAX_MSG = 1 << 20
# Variables read while torch/transformers import: a child must see what the template imported with.
IMPORT_ENV_PREFIXES = ("PYTHON", "TORCH", "PYTORCH", "TRANSFORMERS", "HF_", "OMP_", "MKL_", "LD_", "CUDA_")


def package_fingerprint(pkg_dir: Path | None = None) -> str:
    """sha256 over (name, size, mtime) of the worker package's sources: any edit or reinstall changes it."""
    pkg_dir = pkg_dir or Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(pkg_dir.rglob("*.py")):
        try:
            st = f.stat()
        except OSError:
            continue
        h.update(f"{f.relative_to(pkg_dir)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def env_key(env: dict[str, str]) -> str:
    items = sorted((k, v) for k, v in env.items() if k.startswith(IMPORT_ENV_PREFIXES) and k != "PYTHONUNBUFFERED")
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def warm_imports() -> None:
    """Everything a worker imports before it reads a weight; nothing that starts a thread or a device."""
    import aiohttp  # noqa: F401
    import torch  # noqa: F401
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    from . import cli, engine, httpkit, jobs, metrics, openai_api, scheduler, server  # noqa: F401

    # transformers imports each architecture's modules lazily, on first use: do it now for the
    # families the pools serve, so a child's from_pretrained finds them in sys.modules.
    for name in ("llama", "qwen2", "phi3", "mistral", "gpt2"):
        for sub in ("configuration", "modeling"):
            try:
                __import__(f"transformers.models.{name}.{sub}_{name}")
            except ImportError:
                pass
    for mod in ("tokenization_utils_tokenizers", "tokenization_utils_fast"):
        try:
            __import__(f"transformers.{mod}")
        except ImportError:
            pass
    # The first from_pretrained of a process builds transformers' table of checkpoint-key renamings
    # (~900 regular expressions: 0.3-0.5 s, most of a tiny model's load) and caches it in its module:
    # build it here once, so every forked worker inherits it. Pure Python: no thread, no device.
    try:
        from transformers import conversion_mapping

        conversion_mapping.get_checkpoint_conversion_mapping("llama")
    except (ImportError, AttributeError):
        pass  # another transformers version: its loader pays what it pays
    transformers.utils.logging.disable_progress_bar()


def thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def fork_hazard() -> str | None:
    """Why forking now would be unsafe, or None. torch's own native helper thread is fork-aware (its
    pools re-create themselves in a child, as DataLoader workers rely on); Python threads and an
    initialised CUDA context are not."""
    import threading

    import torch

    if threading.active_count() != 1:
        return f"the template runs {threading.active_count()} Python threads: forking it is not safe"
    if torch.cuda.is_initialized():
        return "CUDA is initialised in the template: a forked child could not use it"
    return None


# Set in a forked worker to the monotonic time of its fork (CLOCK_MONOTONIC is system-wide on Linux):
# the worker's `process` start-up stage runs from here.
FORKED_AT: float | None = None

LISTEN_FD_FLAG = "--listen-fd"
ID_VAR = "LLORCH_WORKER_ID"
PAD_VAR = b"LLORCH_ENV_PAD"  # fills what the id leaves of the placeholder

def _proc_stat_addresses() -> list[int]:
    with open("/proc/self/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    # after the command: field 3 is index 0; arg_start/arg_end/env_start/env_end are fields 48..51
    return [int(fields[i]) for i in (45, 46, 47, 48)]


def _poke(address: int, data: bytes) -> None:
    with open("/proc/self/mem", "r+b", buffering=0) as mem:
        mem.seek(address)
        mem.write(data)


def set_title(words: list[str]) -> None:
    """Make /proc/PID/cmdline read like the worker's command line (ps, `worker sweep`), in the room
    the template's own argv left. Best effort."""
    try:
        start, end, _, _ = _proc_stat_addresses()
        data = b"\0".join(w.encode(errors="replace") for w in words)[: end - start - 1]
        _poke(start, data.ljust(end - start, b"\0"))
    except (OSError, ValueError, IndexError):
        pass


def set_worker_id(worker_id: str) -> None:
    """Write the worker's id over the placeholder value in /proc/PID/environ (the block the kernel
    shows is the one the template was exec'd with): sweep and ps tools read a worker's id there.
    Best effort; the block stays well-formed."""
    try:
        _, _, env_start, env_end = _proc_stat_addresses()
        with open("/proc/self/environ", "rb") as fh:
            block = fh.read()
        key = f"{ID_VAR}=".encode()
        at = block.find(b"\0" + key)
        at = 0 if block.startswith(key) else at + 1 if at >= 0 else -1
        if at < 0:
            return
        room = block.index(b"\0", at) - at - len(key)
        value = worker_id.encode(errors="replace")[:room]
        rest = room - len(value)
        # The rest becomes a filler variable: a NUL run would end the block for readers (psutil).
        filler = b"\0" + PAD_VAR + b"=" + b"-" * (rest - len(PAD_VAR) - 2) if rest >= len(PAD_VAR) + 2 else b" " * rest
        if env_start + at + len(key) + room <= env_end:
            _poke(env_start + at + len(key), value + filler)
    except (OSError, ValueError, IndexError):
        pass


def send_json(conn: socket.socket, doc: dict[str, Any]) -> bool:
    try:
        conn.sendall(json.dumps(doc).encode() + b"\n")
        return True
    except OSError:
        return False


class Template:
    def __init__(self, sock_name: str, idle_s: float, start_env_key: str) -> None:
        self.fingerprint = package_fingerprint()
        self.env_key = start_env_key  # as started: torch's import adds variables of its own
        self.idle_s = idle_s
        self.listener: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(sock_name)  # abstract name: a second template for this pool fails here
        self.listener.listen(16)
        self.conns: dict[socket.socket, bytes] = {}
        self.children: dict[int, tuple[socket.socket | None, str]] = {}  # pid -> (caller, worker id)
        self.last_activity = time.monotonic()
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self.wake_r = r
        signal.set_wakeup_fd(w)  # SIGCHLD wakes select: a child's exit is an event, not a poll
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.sigterm = False  # set by the handler; the loop drains (closing a socket inside select is EBADF)
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "sigterm", True))

    def drain(self, why: str) -> None:
        """Stop taking spawns (and free the name for a successor); exit when the last worker has ended."""
        if self.listener is not None:
            print(f"template {os.getpid()}: draining ({why}); {len(self.children)} worker(s) left", flush=True)
            self.listener.close()
            self.listener = None

    def serve(self) -> int:
        while True:
            if self.sigterm:
                self.drain("SIGTERM")
            if self.listener is None and not self.children:
                return 0
            if not self.children and not self.conns and time.monotonic() - self.last_activity > self.idle_s:
                print(f"template {os.getpid()}: idle for {self.idle_s:.0f}s, exiting", flush=True)
                return 0
            watch: list[Any] = [self.wake_r, *self.conns]
            if self.listener is not None:
                watch.append(self.listener)
            ready, _, _ = select.select(watch, [], [], max(1.0, self.idle_s / 4))
            for obj in ready:
                if obj == self.wake_r:
                    try:
                        os.read(self.wake_r, 4096)
                    except BlockingIOError:
                        pass
                elif obj is self.listener and self.listener is not None:
                    conn, _ = self.listener.accept()
                    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                    if int.from_bytes(creds[4:8], sys.byteorder) != os.getuid():
                        conn.close()  # the abstract namespace has no file mode: only our own user may ask
                        continue
                    self.conns[conn] = b""
                    self.last_activity = time.monotonic()
                elif isinstance(obj, socket.socket):
                    self.read(obj)
            self.reap()

    def read(self, conn: socket.socket) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(conn, MAX_MSG, 4)
        except OSError:
            data, fds = b"", []
        if not data:
            self.forget(conn)
            return
        buf = self.conns.get(conn, b"") + data
        if b"\n" not in buf:
            self.conns[conn] = buf
            for fd in fds:
                os.close(fd)
            return
        self.conns.pop(conn, None)  # one request per connection; a spawn's connection is kept by its child
        self.last_activity = time.monotonic()
        try:
            req = json.loads(buf.split(b"\n", 1)[0])
            self.handle(conn, req, fds)
        except (ValueError, KeyError, TypeError) as exc:
            send_json(conn, {"ok": False, "error": f"bad request: {exc}", "stale": False})
            conn.close()
        finally:
            for fd in fds:
                os.close(fd)

    def handle(self, conn: socket.socket, req: dict[str, Any], fds: list[int]) -> None:
        op = req.get("op")
        if op == "ping":
            stale = self.check_stale()
            send_json(conn, {"ok": not stale, "stale": stale, "pid": os.getpid(), "fingerprint": self.fingerprint,
                             "children": [{"pid": p, "worker_id": w} for p, (_, w) in self.children.items()],
                             **({"error": "the worker package changed since the template started"} if stale else {})})
            conn.close()
        elif op == "stop":
            self.drain("asked to stop")
            send_json(conn, {"ok": True})
            conn.close()
        elif op == "spawn":
            why = self.refusal(req, fds)
            if why is not None:
                send_json(conn, {"ok": False, "error": why, "stale": self.listener is None})
                conn.close()
                return
            self.fork(conn, req, fds)
        else:
            send_json(conn, {"ok": False, "error": f"unknown op {op!r}", "stale": False})
            conn.close()

    def check_stale(self) -> bool:
        if self.listener is not None and package_fingerprint() != self.fingerprint:
            self.drain("the worker package changed")
        return self.listener is None

    def refusal(self, req: dict[str, Any], fds: list[int]) -> str | None:
        if self.check_stale():
            return "the worker package changed since the template started (a fresh one takes over)"
        wanted = 4 if LISTEN_FD_FLAG in req["argv"] else 3
        if len(fds) != wanted:
            return (f"expected stdin, stdout, stderr{' and the listening socket' if wanted == 4 else ''}, "
                    f"got {len(fds)} fd(s)")
        if env_key(req["env"]) != self.env_key:
            return "the spawn's environment (PYTHON*/TORCH*/HF_*/CUDA_*/... variables) differs from the template's"
        return fork_hazard()

    def fork(self, conn: socket.socket, req: dict[str, Any], fds: list[int]) -> None:
        argv = [str(a) for a in req["argv"]]
        worker_id = argv[argv.index("--worker-id") + 1] if "--worker-id" in argv else "?"
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            send_json(conn, {"ok": False, "error": f"fork failed: {exc}", "stale": False})
            conn.close()
            return
        if pid == 0:
            global FORKED_AT
            FORKED_AT = time.monotonic()
            self.become_worker(argv, req, fds)  # never returns
        self.children[pid] = (conn, worker_id)
        if not send_json(conn, {"ok": True, "pid": pid}):
            self.children[pid] = (None, worker_id)

    def become_worker(self, argv: list[str], req: dict[str, Any], fds: list[int]) -> None:
        code = 70
        try:
            os.setsid()  # its own session and process group: stop/kill reach it and its children only
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            if self.listener is not None:
                self.listener.close()
            for c in [*self.conns, *(c for c, _ in self.children.values() if c is not None)]:
                c.close()
            os.close(self.wake_r)
            for target, fd in enumerate(fds[:3]):
                os.dup2(fd, target)
                os.close(fd)
            if len(fds) == 4:  # the listening socket stays where it arrived (>= 3: stdio was open here)
                argv[argv.index(LISTEN_FD_FLAG) + 1] = str(fds[3])
            os.chdir(req["cwd"])
            os.environ.clear()
            os.environ.update({str(k): str(v) for k, v in req["env"].items()})
            sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
            set_title(["llorch-worker", *argv])
            set_worker_id(os.environ.get(ID_VAR, ""))
            from .cli import main

            code = main(argv)  # ends in os._exit; a return is a bug, reported as 70
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 70
        except BaseException as exc:  # noqa: BLE001 - the child must never return into the template loop
            print(f"LLORCH_WORKER_ERROR {json.dumps({'code': 'internal', 'message': f'forked start failed: {exc}'})}",
                  file=sys.stderr, flush=True)
        finally:
            os._exit(code)

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            caller, _ = self.children.pop(pid, (None, ""))
            self.last_activity = time.monotonic()
            if caller is not None:
                sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
                send_json(caller, {"exit": {"returncode": -sig if sig else os.WEXITSTATUS(status),
                                            "signal": signal.Signals(sig).name if sig else None}})
                caller.close()

    def forget(self, conn: socket.socket) -> None:
        """A caller went away (its supervisor died): its worker lives on; nobody awaits its exit status."""
        self.conns.pop(conn, None)
        for pid, (c, w) in list(self.children.items()):
            if c is conn:
                self.children[pid] = (None, w)
        conn.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m llorch_worker.template")
    p.add_argument("--socket", required=True, help="abstract Unix socket name (without the leading NUL)")
    p.add_argument("--state-dir", required=True, help="the pool this template serves (shown in ps)")
    p.add_argument("--idle-s", type=float, default=900.0, help="exit after this long with no worker and no request")
    p.add_argument("--ready-fd", type=int, help="write one JSON line here when listening, then close it")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    start_env_key = env_key(dict(os.environ))
    warm_imports()
    import_s = time.monotonic() - t0
    out = os.fdopen(args.ready_fd, "w") if args.ready_fd is not None else None
    try:
        tpl = Template("\0" + args.socket, args.idle_s, start_env_key)
    except OSError as exc:
        if out is not None:
            out.write(json.dumps({"ok": False, "error": f"cannot listen: {exc}"}) + "\n")
            out.close()
        return 1
    info = {"ok": True, "pid": os.getpid(), "fingerprint": tpl.fingerprint, "import_s": round(import_s, 3),
            "native_threads": thread_count()}
    print(f"template {os.getpid()}: ready after {import_s:.2f}s of imports: {json.dumps(info)}", flush=True)
    if out is not None:
        out.write(json.dumps(info) + "\n")
        out.close()
    return tpl.serve()


if __name__ == "__main__":
    sys.exit(main())
