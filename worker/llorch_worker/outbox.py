"""Hand-off of job events from the decode thread to the event loop, coalesced.

Every `loop.call_soon_threadsafe` writes to the loop's self-pipe and wakes it; the woken loop then
competes with the decode thread for the GIL. Posting one callback per token per row (16 rows:
16 wake-ups per decode step) made the hand-off cost grow with the batch. An Outbox collects the
events of a whole step (or more, while the loop is busy) and delivers them in one callback, in
the order they were produced, so each request still sees its events in order.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from typing import Callable

from .jobs import Event


class Outbox:
    """One per event loop: `post` from any thread, delivery on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[tuple[asyncio.Queue[Event], Event]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def post(self, queue: asyncio.Queue[Event], event: Event) -> None:
        with self._lock:
            self._items.append((queue, event))
            if self._scheduled:
                return  # the pending delivery will take this one too
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed (shutdown): nobody is listening any more
            pass

    def sender(self, queue: asyncio.Queue[Event]) -> Callable[[Event], None]:
        """The `emit` of one job: posts into this outbox for that job's queue."""
        return lambda event: self.post(queue, event)

    def _deliver(self) -> None:
        with self._lock:
            items, self._items = self._items, deque()
            self._scheduled = False
        for queue, event in items:
            queue.put_nowait(event)


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Outbox] = weakref.WeakKeyDictionary()


def outbox_for(loop: asyncio.AbstractEventLoop) -> Outbox:
    """The outbox of a loop (a worker runs one loop; in-process tests may run several)."""
    box = _BY_LOOP.get(loop)
    if box is None:
        box = _BY_LOOP[loop] = Outbox(loop)
    return box
