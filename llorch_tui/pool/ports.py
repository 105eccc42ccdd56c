"""Port choice for workers: 8000+gpu by default, the next free one if taken, loopback only.

The agent does not only choose the port, it holds it: `hold_port` returns the listening socket,
bound at the moment of the choice, and the worker inherits it (`llorch-worker --listen-fd`). A
port that was merely found free could be taken by anyone between the choice and the worker's own
bind, seconds later on a busy machine.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

from llorch_tui.errors import ErrorCode, LlorchError

BASE_PORT = 8000
SCAN_SPAN = 200
HOST = "127.0.0.1"
BACKLOG = 128  # connections that arrive before the worker accepts wait here (aiohttp's own default)


def _bound(port: int, host: str = HOST) -> socket.socket | None:
    """A socket bound to the port, or None if it is taken. SO_REUSEADDR as the worker always bound
    (a TIME_WAIT port is not 'taken'); it does not let two sockets listen on one port."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
    except OSError as exc:
        s.close()
        if exc.errno == errno.EADDRINUSE:
            return None
        raise LlorchError(ErrorCode.PORT_IN_USE, f"cannot bind {host}:{port}: {exc.strerror or exc}",
                          "pick another --port (ports below 1024 need root)", port=port) from exc
    return s


def port_free(port: int, host: str = HOST) -> bool:
    """True if we could bind it now."""
    s = _bound(port, host)
    if s is None:
        return False
    s.close()
    return True


def default_port(gpu: int | None) -> int:
    return BASE_PORT + (gpu or 0)


def hold_port(gpu: int | None, explicit: int | None = None, reserved: Iterable[int] = ()) -> socket.socket:
    """A listening loopback socket on the chosen port: an explicit one must be free (else
    PORT_IN_USE); otherwise the first free one scanning up from 8000+gpu.

    `reserved` are ports of workers still starting under an older agent (which bound nothing
    until its worker did): a bind test misses them.
    """
    taken = set(reserved)
    if explicit is not None:
        s = None if explicit in taken else _bound(explicit)
        if s is None:
            raise LlorchError(ErrorCode.PORT_IN_USE, f"port {explicit} on {HOST} is already in use",
                              "pick another --port, or leave --port out to take the next free one "
                              "(`llorch-pool worker list` shows the ports of running workers)", port=explicit)
        s.listen(BACKLOG)
        return s
    start = default_port(gpu)
    for port in range(start, start + SCAN_SPAN):
        if port in taken:
            continue
        s = _bound(port)
        if s is not None:
            s.listen(BACKLOG)
            return s
    raise LlorchError(ErrorCode.PORT_IN_USE, f"no free port in {start}-{start + SCAN_SPAN - 1} on {HOST}",
                      "stop workers you no longer need (`llorch-pool worker stop --all`) or pass --port")


def pick_port(gpu: int | None, explicit: int | None = None, reserved: Iterable[int] = ()) -> int:
    """The port `hold_port` would choose now, released at once (for a caller that only needs a number)."""
    with hold_port(gpu, explicit, reserved) as s:
        return int(s.getsockname()[1])
