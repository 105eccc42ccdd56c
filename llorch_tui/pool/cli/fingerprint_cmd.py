"""`llorch-pool models fingerprint | fingerprint-export | fingerprint-import`: a model's reference.

Export and import read and write files where the command runs, so with `llorch pool ... --host H`
a fingerprint travels from one pool to another through the operator's machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool.cli.spec import CommandSpec
from llorch_tui.pool.cli.worker_cmd import SpawnProgress
from llorch_tui.protocol import ops
from llorch_tui.protocol.events import Event, FingerprintStage
from llorch_tui.protocol.catalog import ModelEntry
from llorch_tui.protocol.parity import Fingerprint, FingerprintReport, ModelReference


def describe(fp: Fingerprint | None) -> str:
    """One line for a fingerprint: suite, size, perplexity, when and where (also `models list`)."""
    if fp is None:
        return "-"
    steps = len(fp.prompts[0].steps) if fp.prompts else 0
    return (f"{fp.prompt_set_version} ({len(fp.prompts)}×{steps} tokens, top-{fp.top_k}"
            + (f", ppl {fp.perplexity:.3f}" if fp.perplexity is not None else "")
            + f") {fp.backend}/{fp.dtype} {fp.recorded_at.isoformat()[:16]} on {fp.recorded_on or '?'}"
            + f", weights {fp.weights_sha256[:12]}")


def brief(fp: Fingerprint | None) -> str:
    """A few words for a table cell: suite, perplexity, date."""
    if fp is None:
        return "-"
    return " ".join(x for x in (fp.prompt_set_version, f"ppl {fp.perplexity:.2f}" if fp.perplexity is not None else "",
                                fp.recorded_at.isoformat()[:10]) if x)


def _fingerprint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="model id")
    p.add_argument("--accept", action="store_true",
                   help="record a new reference and replace the stored one (after a deliberate change of weights)")
    p.add_argument("--timeout", type=float, dest="timeout_s", help="seconds the reference worker may take to load")


class FingerprintProgress(SpawnProgress):
    def __call__(self, ev: Event) -> None:
        if isinstance(ev, FingerprintStage) and ev.stage == "recording":
            if self.status is not None:
                self.status.stop()
            self.console.print(f"recording the reference ({ev.prompt_set}) with worker {ev.worker_id}",
                               highlight=False)
            self.status = self.console.status("recording...")
            self.status.start()
        else:
            super().__call__(ev)


def render_fingerprint(rep: FingerprintReport, console: Console) -> None:
    verb = "recorded" if rep.recorded else "kept (already recorded; --accept records a new one)"
    console.print(f"{rep.model}: reference {verb}", highlight=False)
    console.print(f"  {describe(rep.fingerprint)}", highlight=False)
    if rep.weights_changed:
        console.print(f"  [bold yellow]the weights changed since it was recorded[/] (now "
                      f"{rep.weights_sha256[:12]}): matrix runs compare against the stored reference "
                      f"and say so; `llorch-pool models fingerprint {rep.model} --accept` makes the new weights "
                      "the reference", highlight=False)


def render_export(ref: ModelReference, console: Console) -> None:
    """The bare fingerprint JSON on stdout (redirect it to a file), or a note on stderr when there is none."""
    if ref.fingerprint is None:
        Console(stderr=True).print(f"{ref.model} has no reference fingerprint yet: "
                                   f"`llorch-pool models fingerprint {ref.model}` records one", highlight=False)
        return
    sys.stdout.write(json.dumps(ref.fingerprint.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _id_only(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="model id")


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="model id (on this pool)")
    p.add_argument("file", help="a fingerprint JSON written by `models fingerprint-export` ('-' = stdin)")
    p.add_argument("--accept", action="store_true",
                   help="replace an existing reference / import one recorded from other weights")


def _import_params(a: argparse.Namespace) -> dict[str, Any]:
    try:
        raw = sys.stdin.read() if a.file == "-" else Path(a.file).read_text(encoding="utf-8")
        doc = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise LlorchError(ErrorCode.BAD_REQUEST, f"cannot read a fingerprint from {a.file}: {exc}",
                          "give a file written by `llorch-pool models fingerprint-export ID -o FILE`") from None
    if isinstance(doc, dict) and "fingerprint" in doc and "prompts" not in doc:
        doc = doc["fingerprint"]  # the --json output of fingerprint-export / models.reference
    return {"id": a.id, "fingerprint": doc, "accept": bool(a.accept)}


def _render_imported(entry: ModelEntry, console: Console) -> None:
    console.print(f"{entry.id}: reference imported — {describe(entry.fingerprint)}", highlight=False)



COMMANDS: list[CommandSpec] = [
    CommandSpec(("models", "fingerprint"),
                "record the model's reference fingerprint on cpu float32 (shown if one exists; --accept replaces it)",
                _fingerprint_args, op=ops.MODELS_FINGERPRINT,
                to_params=lambda a: {k: v for k, v in {"id": a.id, "accept": a.accept, "timeout_s": a.timeout_s}.items()
                                     if v is not None},
                render=render_fingerprint, events=FingerprintProgress),
    CommandSpec(("models", "fingerprint-export"), "print the model's reference fingerprint as JSON (> FILE to save it)",
                _id_only, op=ops.MODELS_REFERENCE,
                to_params=lambda a: {"id": a.id}, render=render_export,
                exit_code=lambda ref: 0 if ref.fingerprint else 1),
    CommandSpec(("models", "fingerprint-import"), "import a reference fingerprint from a JSON file (another pool's)",
                _import_args, op=ops.MODELS_SET_FINGERPRINT, to_params=_import_params, render=_render_imported),
]
