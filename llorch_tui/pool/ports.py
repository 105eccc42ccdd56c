"""Port choice for workers: 8000+gpu by default, the next free one if taken, loopback only."""

from __future__ import annotations

import socket
from collections.abc import Iterable

from llorch_tui.errors import ErrorCode, LlorchError

BASE_PORT = 8000
SCAN_SPAN = 200


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if we could bind it now. SO_REUSEADDR mirrors how the worker binds (TIME_WAIT is not 'taken')."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def default_port(gpu: int | None) -> int:
    return BASE_PORT + (gpu or 0)


def pick_port(gpu: int | None, explicit: int | None = None, reserved: Iterable[int] = ()) -> int:
    """An explicit port must be free (else PORT_IN_USE); otherwise scan up from 8000+gpu.

    `reserved` are ports of workers still starting: they may not have bound yet, so a bind test misses them.
    """
    taken = set(reserved)
    if explicit is not None:
        if explicit in taken or not port_free(explicit):
            raise LlorchError(ErrorCode.PORT_IN_USE, f"port {explicit} on 127.0.0.1 is already in use",
                              "pick another --port, or leave --port out to take the next free one "
                              "(`llorch-pool worker list` shows the ports of running workers)", port=explicit)
        return explicit
    start = default_port(gpu)
    for port in range(start, start + SCAN_SPAN):
        if port not in taken and port_free(port):
            return port
    raise LlorchError(ErrorCode.PORT_IN_USE, f"no free port in {start}-{start + SCAN_SPAN - 1} on 127.0.0.1",
                      "stop workers you no longer need (`llorch-pool worker stop --all`) or pass --port")
