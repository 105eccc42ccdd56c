"""Stopping a process the one way the agent does it: SIGTERM, a grace period, then SIGKILL."""

from __future__ import annotations

import os
import signal

import psutil

KILL_WAIT_S = 5.0


def _send(pid: int, pgid: int | None, sig: signal.Signals) -> None:
    try:
        if pgid is None:
            os.kill(pid, sig)
        else:
            os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        if pgid is not None:
            os.kill(pid, sig)  # the group holds a process we may not signal: at least reach ours


def terminate(pid: int, pgid: int | None, grace_s: float) -> None:
    """SIGTERM (to the group when `pgid` is given), wait `grace_s` for `pid` to exit, then SIGKILL."""
    _send(pid, pgid, signal.SIGTERM)
    try:
        psutil.Process(pid).wait(grace_s)
        return
    except psutil.NoSuchProcess:
        return
    except psutil.TimeoutExpired:
        pass
    _send(pid, pgid, signal.SIGKILL)
    try:
        psutil.Process(pid).wait(KILL_WAIT_S)
    except (psutil.NoSuchProcess, psutil.TimeoutExpired):
        pass
