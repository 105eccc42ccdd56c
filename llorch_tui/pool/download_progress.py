"""Progress of one download: bytes, speed over a sliding window, ETA, at most ~10 events a second.

Events cross an SSH channel to a dashboard; one per 1 MiB chunk would flood it, so byte updates
are coalesced. Stage changes (a file finished, a retry) are always sent at once.
"""

from __future__ import annotations

import collections
import time
from typing import Callable

from llorch_tui.protocol.downloads import DownloadProgress, DownloadStage

MIN_INTERVAL_S = 0.1
SPEED_WINDOW_S = 5.0


class ProgressReporter:
    def __init__(self, emit: Callable[[str, DownloadProgress], None], model: str, endpoint: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._emit, self._clock = emit, clock
        self.state = DownloadProgress(model=model, stage="resolving", endpoint=endpoint)
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._last_sent = float("-inf")

    def plan(self, files_total: int, bytes_total: int, bytes_done: int) -> None:
        self.state.files_total, self.state.bytes_total, self.state.bytes_done = files_total, bytes_total, bytes_done
        self._samples.clear()
        self._samples.append((self._clock(), bytes_done))

    def add_bytes(self, n: int) -> None:
        self.state.bytes_done += n
        now = self._clock()
        self._samples.append((now, self.state.bytes_done))
        while len(self._samples) > 2 and now - self._samples[0][0] > SPEED_WINDOW_S:
            self._samples.popleft()
        if now - self._last_sent >= MIN_INTERVAL_S:
            self.send("downloading")

    def _speed(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def send(self, stage: DownloadStage, *, file: str | None = None, attempt: int | None = None,
             message: str | None = None, force: bool = False) -> None:
        """Send the state now if forced (resolving, first bytes, retrying, done) or the rate allows."""
        s = self.state
        s.stage = stage
        if file is not None:
            s.file = file
        s.attempt, s.message = attempt, message
        if not force and self._clock() - self._last_sent < MIN_INTERVAL_S:
            return
        s.speed_bps = round(self._speed(), 1)
        remaining = max(s.bytes_total - s.bytes_done, 0)
        s.eta_s = round(remaining / s.speed_bps, 1) if s.speed_bps > 0 else (0.0 if remaining == 0 else None)
        self._last_sent = self._clock()
        self._emit("progress", s.model_copy())

    def file_done(self, name: str) -> None:
        self.state.files_done += 1
        self.send("verifying", file=name)
