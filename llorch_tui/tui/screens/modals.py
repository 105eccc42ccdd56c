"""Modals: spawn a worker, confirm, copy a model, install llorch on a pool, register or synthesize a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, RadioButton, RadioSet, Select, Static

from llorch_tui.protocol.fit import FitEstimate
from llorch_tui.protocol.params import SYNTH_ARCHITECTURES
from llorch_tui.tui.core.fit_view import FitRecord, fit_line
from llorch_tui.tui.guard import guard_handlers

T = TypeVar("T")


@guard_handlers
class FormModal(ModalScreen[T | None], Generic[T]):
    """A dialog of fields over an OK/Cancel row: Esc or q cancels, focus starts on `FIRST_FOCUS`."""

    # q closes the modal, not the app; typed into a text input it stays a letter (the input takes it first).
    BINDINGS = [Binding("escape,q", "cancel", "Cancel")]
    FIRST_FOCUS: ClassVar[str] = "#ok"

    def __init__(self) -> None:
        super().__init__(classes="modal")

    @staticmethod
    def buttons(ok: str) -> ComposeResult:
        with Horizontal(classes="buttons"):
            yield Button(ok, variant="success", id="ok")
            yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(self.FIRST_FOCUS).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)


@guard_handlers
class ConfirmModal(ModalScreen[bool]):
    """Yes/no. Enter or y confirms, Esc, n or q cancels."""

    # q answers no: inside a modal it closes the modal, never the app (ctrl+q still quits).
    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape,q", "answer(False)", "No")]

    def __init__(self, question: str) -> None:
        super().__init__(classes="modal")
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self.question), classes="question")  # ids from pools: never markup
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


DTYPES = (("auto (the worker's choice)", "auto"), ("float32", "float32"), ("bfloat16", "bfloat16"),
          ("float16", "float16"))


class FitSource(Protocol):
    """What the spawn modal asks about fit: the judged estimate now, and a fetch of one not made yet."""

    def judge(self, backend: str, dtype: str) -> FitEstimate | FitRecord | None: ...
    async def estimate(self, dtype: str) -> None: ...


@guard_handlers
class SpawnModal(FormModal[dict[str, Any]]):
    """Choose the backend, dtype (and the GPU for cuda) of a new worker, seeing whether it fits first."""

    HELP = ("Pick the backend, the dtype and, for cuda, the GPU; the line below says what the worker needs against "
            "the pool's free memory. Enter on Spawn starts the worker (`Spawn anyway` when it will not fit); Esc "
            "cancels.")

    def __init__(self, pool: str, model: str, backends: list[str], gpus: list[tuple[int, str]],
                 fit: FitSource | None = None) -> None:
        super().__init__()
        self.pool, self.model, self.backends, self.gpus, self.fit = pool, model, backends, gpus, fit

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            # Names come from pools and config: Text, never markup.
            yield Label(Text.assemble("Spawn a worker for ", (self.model, "bold"), " on ", (self.pool, "bold")),
                        classes="question")
            yield Label("backend")
            yield Select([(b, b) for b in self.backends], value=self.backends[0], allow_blank=False, id="backend")
            yield Label("dtype")
            yield Select(DTYPES, value="auto", allow_blank=False, id="dtype")
            yield Label("gpu")
            options = [("auto / none", -1)] + [(f"{i}: {name}", i) for i, name in self.gpus]
            yield Select(options, value=-1, allow_blank=False, id="gpu")
            yield Static("", id="fit")
            yield from self.buttons("Spawn")

    def on_mount(self) -> None:
        super().on_mount()
        self.show_fit()

    def choice(self) -> tuple[str, str]:
        return str(self.query_one("#backend", Select).value), str(self.query_one("#dtype", Select).value)

    def show_fit(self) -> None:
        """The fit line of the chosen backend and dtype; asks the pool for a dtype not estimated yet."""
        if self.fit is None:
            return
        backend, dtype = self.choice()
        judged = self.fit.judge(backend, dtype)
        if judged is None and dtype != "auto":
            self.run_worker(self._estimate(dtype), group=f"fit:{dtype}", exit_on_error=False)
        line = fit_line(judged, self.model, backend)
        wont = isinstance(judged, FitEstimate) and judged.fits is False
        if wont:
            line = Text.assemble(("⚠ ", "bold red"), line, "\nThe worker would run out of memory: pick another "
                                 "backend or dtype, free memory, or spawn anyway.")
        self.query_one("#fit", Static).update(line)
        self.query_one("#ok", Button).label = "Spawn anyway" if wont else "Spawn"

    async def _estimate(self, dtype: str) -> None:
        assert self.fit is not None
        await self.fit.estimate(dtype)
        self.show_fit()

    @on(Select.Changed, "#backend, #dtype")
    def _choice_changed(self) -> None:
        self.show_fit()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id != "ok":
            self.dismiss(None)
            return
        backend, dtype = self.choice()
        gpu = self.query_one("#gpu", Select).value
        params: dict[str, Any] = {"backend": backend}
        if dtype != "auto":
            params["dtype"] = dtype
        if isinstance(gpu, int) and gpu >= 0:
            params["gpu"] = gpu
        self.dismiss(params)


@guard_handlers
class CopyModal(FormModal[str]):
    """Pick the pool to copy a model to (online pools other than its own)."""

    HELP = "Pick the target pool. The files stream through this machine, verified by sha256; Esc cancels."

    def __init__(self, pool: str, model: str, targets: list[str]) -> None:
        super().__init__()
        self.pool, self.model, self.targets = pool, model, targets

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            yield Label(Text.assemble("Copy ", (self.model, "bold"), " from ", (self.pool, "bold"), " to"),
                        classes="question")
            yield Select([(t, t) for t in self.targets], value=self.targets[0], allow_blank=False, id="target")
            yield from self.buttons("Copy")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        target = self.query_one("#target", Select).value
        self.dismiss(str(target) if event.button.id == "ok" and isinstance(target, str) else None)


TORCH_CHOICES = (("auto (cuda with an NVIDIA driver, MPS on macOS, else cpu)", "auto"), ("cpu", "cpu"),
                 ("cuda", "cuda"), ("metal", "metal"), ("existing (the interpreter's own)", "existing"),
                 ("none (agent only: no workers)", "none"))


@dataclass(frozen=True)
class InstallPlan:
    """What the install modal shows before anything happens."""

    pool: str
    where: str  # user@host:port, or "this machine"
    version: str
    venv: str
    config: str | None  # the file agent_command goes into; None: not recorded
    installed: str | None  # the llorch version the pool runs now, if it answered
    upgrade: bool  # preselected: the pool runs another version


@guard_handlers
class InstallModal(FormModal[dict[str, Any]]):
    """Confirm installing this machine's llorch on a pool: what, where, with which torch."""

    HELP = ("Installs this machine's exact llorch and llorch-worker (wheels built here, copied over the pool's SSH "
            "connection) and torch into a venv on the pool, then records agent_command. Nothing is installed until "
            "you press Install; a second install of the same version does nothing unless `upgrade` is on.")

    def __init__(self, plan: InstallPlan) -> None:
        super().__init__()
        self.plan = plan

    def compose(self) -> ComposeResult:
        p = self.plan
        with VerticalScroll(classes="dialog"):
            yield Label(Text.assemble("Install llorch ", (p.version, "bold"), " on ", (p.pool, "bold"),
                                      f" ({p.where})"), classes="question")
            now = f"llorch {p.installed} there now" if p.installed else "no llorch agent answering there now"
            yield Label(Text(f"{now}; llorch and llorch-worker {p.version} will be built here and copied over, "
                             f"into the venv {p.venv} on the pool."))
            yield Label("torch")
            yield Select(TORCH_CHOICES, value="auto", allow_blank=False, id="torch")
            yield Checkbox("upgrade: reinstall even when the versions already match", p.upgrade, id="upgrade")
            yield Label(Text(f"Then agent_command = {p.venv}/bin/llorch-pool is recorded in {p.config}" if p.config
                             else "agent_command will not be recorded (no configuration file)"), classes="dim")
            yield from self.buttons("Install")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id != "ok":
            self.dismiss(None)
            return
        self.dismiss({"torch": str(self.query_one("#torch", Select).value),
                      "upgrade": self.query_one("#upgrade", Checkbox).value})


@guard_handlers
class ModelModal(FormModal[dict[str, Any]]):
    """Register a model (a seed preset needs only its id) or synthesize a tiny random-weight one."""

    FIRST_FOCUS = "#model-id"  # typing goes into the id at once
    HELP = ("**Register** adds a catalog entry (a configured preset needs only its id; others need a Hub repo "
            "and architecture); download it afterwards with `d`. **Synthesize** writes a tiny random-weight "
            "checkpoint of a real architecture, ready to spawn at once.")

    def __init__(self, pools: list[str], pool: str, presets: list[str]) -> None:
        super().__init__()
        self.pools, self.pool, self.presets = pools, pool, presets

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            yield Label("Add a model", classes="question")
            with RadioSet(id="kind"):
                yield RadioButton("synthesize", value=True, id="synth")
                yield RadioButton("register", id="register")
            yield Label("pool")
            yield Select([(p, p) for p in self.pools], value=self.pool, allow_blank=False, id="pool")
            yield Label("id" + (f" (presets: {', '.join(self.presets)})" if self.presets else ""))
            yield Input(placeholder="e.g. tiny-llama", id="model-id")
            yield Label("architecture")
            yield Select([(a, a) for a in SYNTH_ARCHITECTURES], value="llama", allow_blank=False, id="arch")
            yield Label("Hub repo (register only, optional for presets)")
            yield Input(placeholder="org/name", id="repo")
            yield from self.buttons("Add")

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self._finish()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._finish()
        else:
            self.dismiss(None)

    def _finish(self) -> None:
        model_id = self.query_one("#model-id", Input).value.strip()
        if not model_id:
            self.notify("type a model id first", severity="warning")
            return
        kind = "register" if self.query_one("#register", RadioButton).value else "synth"
        arch = str(self.query_one("#arch", Select).value)
        params: dict[str, Any] = {"pool": str(self.query_one("#pool", Select).value), "kind": kind, "id": model_id}
        if kind == "synth":
            params["architecture"] = arch
        else:
            repo = self.query_one("#repo", Input).value.strip()
            if repo:
                params.update(repo=repo, architecture=arch)
        self.dismiss(params)
