"""The events an op streams before its result: one model per kind, and which op sends which.

On the wire an event stays `{"type":"event","event":NAME,"data":{...}}` (see `protocol/__init__.py`); the
agent emits these models and the typed client (`pool_api.call_op`) parses each event once with the model
its op declares for NAME (`OpRef.events`), so consumers read attributes and mypy catches a wrong field.
Like every wire model they only gain fields, all new ones optional: an older agent's event still parses,
a newer agent's extra fields are kept. `stage` is a plain string, not a closed set, for the same reason:
a consumer shows a stage it does not know as it is, or skips it.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from pydantic import Field, ValidationError

from llorch_tui.protocol import WireModel
from llorch_tui.protocol.downloads import DownloadProgress
from llorch_tui.protocol.transfer import FileFetched, MirrorServing

log = logging.getLogger(__name__)


class Tick(WireModel):
    """`agent.ticks`: the protocol self-test's counter."""

    n: int


class LogLine(WireModel):
    """`workers.logs --follow`: one line of the worker's log."""

    text: str = ""


class StageEvent(WireModel):
    """A stage report, sent sparse: only the fields its emitter set go on the wire (as they always did)."""


class ModelStage(StageEvent):
    """A stage of adding a model (`models.synth`, a GGUF `models.register`, `models.fetch_example`)."""

    stage: str
    model: str = ""
    file: str | None = None  # the GGUF or wheel member being read, hashed or converted
    path: str | None = None  # reuse: the conversion found in the models dir
    bytes_total: int | None = None  # hash: the GGUF's size
    pid: int | None = None  # a stage that runs a child process (synthesize, convert, fetch)
    requirement: str | None = None  # fetch: the pip requirement of the example's wheel
    architecture: str | None = None  # synthesize
    size: str | None = None
    like: str | None = None
    noop: bool = False  # done: the model was there already


class SpawnStage(StageEvent):
    """A stage of starting a worker (`workers.spawn`): port, spawned, loading, waiting, ready."""

    stage: str
    worker_id: str | None = None
    id: str | None = None  # what older agents named worker_id
    pid: int | None = None
    port: int | None = None
    held: bool = False  # port: bound by the agent and handed to the worker, so nothing can take it
    log_path: str | None = None
    timeout_s: float | None = None
    start_mode: str | None = None  # spawned: "fork" (from the warm template) or "exec"
    start_note: str | None = None
    elapsed_s: float | None = None  # waiting
    load_s: float | None = None  # ready
    message: str | None = None


class FingerprintStage(SpawnStage):
    """`models.fingerprint`: its own stages (spawning, recording, done) and those of its reference worker's spawn."""

    backend: str | None = None
    dtype: str | None = None
    prompt_set: str | None = None


class OtherEvent(WireModel):
    """An event its op does not declare (a newer agent's): kept whole, for consumers to skip."""

    event: str
    data: dict[str, Any] = Field(default_factory=dict)


Event = (Tick | LogLine | ModelStage | SpawnStage | FingerprintStage | DownloadProgress | FileFetched | MirrorServing
         | OtherEvent)
# What a typed consumer gets: each event parsed into its model.
EventHandler = Callable[[Event], None]
# What an op declares: event name -> its model.
EventModels = Mapping[str, type[Event]]

PROGRESS = "progress"


def parse_event(models: EventModels, name: str, data: dict[str, Any]) -> Event | None:
    """`data` as the model declared for `name`; an undeclared name is an OtherEvent. None (and a warning in
    the log) when the data does not fit: a progress report is advice, never worth failing the op for."""
    model = models.get(name)
    if model is None:
        return OtherEvent(event=name, data=data)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        log.warning("dropped a %r event that does not fit %s: %s", name, model.__name__, exc.errors()[0])
        return None


def typed_sink(models: EventModels, handler: EventHandler) -> Callable[[str, dict[str, Any]], None]:
    """The raw (name, data) sink a session calls, feeding `handler` parsed events."""

    def sink(name: str, data: dict[str, Any]) -> None:
        event = parse_event(models, name, data)
        if event is not None:
            handler(event)

    return sink
