"""`llorch-pool models register|unregister|update|list|catalog` (the catalog half of the models group)."""

from __future__ import annotations

import argparse
from typing import Any, Callable

from rich.console import Console
from rich.table import Table

from llorch_tui.pool.cli.spec import CommandSpec, no_args
from llorch_tui.protocol import ops
from llorch_tui.protocol.catalog import Catalog, ModelEntry, VerdictRecord
from llorch_tui.units import fmt_size_gb
from llorch_tui.pool.cli.stage_progress import StageProgress


def parse_bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "yes", "1", "on"):
        return True
    if v in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def split_backends(values: list[str] | None) -> list[str] | None:
    """--backends cpu cuda, --backends cpu,cuda and repeated flags all mean the same."""
    if values is None:
        return None
    return [b.strip() for v in values for b in v.split(",") if b.strip()]


def fmt_verdicts(verdicts: dict[str, VerdictRecord]) -> str:
    colour = {"pass": "green", "fail": "red", "skipped": "yellow"}
    parts = []
    for backend, rec in sorted(verdicts.items()):
        parts.append(f"[{colour.get(rec.verdict, 'white')}]{backend}:{rec.verdict}[/] {rec.date.isoformat()[:10]}")
    return "\n".join(parts) or "-"


def _id_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="model id (letters, digits, '.', '-', '_')")


def _backends_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backends", nargs="+", metavar="BACKEND",
                   help="backends this model may run on: cpu cuda metal (space- or comma-separated)")


def _register_args(p: argparse.ArgumentParser) -> None:
    _id_arg(p)
    p.add_argument("--name", help="display name (default: the preset's name, else the id)")
    p.add_argument("--repo", help="Hugging Face repo id, OWNER/NAME (not needed for seed presets)")
    p.add_argument("--architecture", help="model_type: llama, qwen2, phi3, mistral, ... (not needed for seed presets)")
    _backends_arg(p)
    p.add_argument("--path", help="register a checkpoint already on disk (source local): a directory with config.json, "
                   "or a GGUF: a .gguf file, a folder holding one, an Ollama blob or manifest")
    p.add_argument("--no-convert", dest="convert", action="store_false",
                   help="GGUF only: let workers load the GGUF itself (dequantizing on every load) instead of "
                   "converting it once to float32 safetensors in the models dir")
    p.add_argument("--context-length", type=int, help="context length in tokens")
    p.add_argument("--vocab-size", type=int, help="vocabulary size")
    p.add_argument("--revision", help="Hub revision (branch, tag or commit) to download")
    p.add_argument("--source", choices=["hub", "mirror", "synthetic", "local"], help="where the files come from")


def _register_params(a: argparse.Namespace) -> dict[str, Any]:
    d = {k: getattr(a, k) for k in ("id", "name", "repo", "architecture", "path", "context_length", "vocab_size",
                                     "revision", "source")}
    d["backends"] = split_backends(a.backends)
    d = {k: v for k, v in d.items() if v is not None}
    if not a.convert:
        d["convert"] = False
    if not d.get("repo") and not d.get("path"):
        d = {**_config_preset(a, d["id"]), **d}
    return d


def _config_preset(a: argparse.Namespace, model_id: str) -> dict[str, Any]:
    """A [[models]] preset from the configuration (where this command runs) fills what the flags left out.

    Seed presets are known to the agent itself; this adds the operator's own. For `llorch pool models
    register --host H` it is the control machine's config, which is where the operator keeps presets."""
    from llorch_tui.config_load import load_config

    preset = load_config(getattr(a, "config", None)).config.preset(model_id)
    if preset is None:
        return {}
    return preset.model_dump(include={"name", "repo", "architecture", "context_length", "vocab_size", "revision",
                                      "backends"}, exclude_none=True)


def _update_args(p: argparse.ArgumentParser) -> None:
    _id_arg(p)
    p.add_argument("--downloaded", type=parse_bool, metavar="true|false", help="mark the files as present or not")
    p.add_argument("--name", help="display name")
    p.add_argument("--repo", help="Hugging Face repo id, OWNER/NAME")
    p.add_argument("--architecture", help="model_type, e.g. llama")
    _backends_arg(p)
    p.add_argument("--revision", help="Hub revision")


def _update_params(a: argparse.Namespace) -> dict[str, Any]:
    d = {k: getattr(a, k) for k in ("id", "downloaded", "name", "repo", "architecture", "revision")}
    d["backends"] = split_backends(a.backends)
    return {k: v for k, v in d.items() if v is not None}


def render_entry(verb: str) -> Callable[[ModelEntry, Console], None]:
    def render(entry: ModelEntry, console: Console) -> None:
        state = "downloaded" if entry.downloaded else "not downloaded"
        console.print(f"{verb} [bold]{entry.id}[/] ({entry.name}, {entry.architecture}, "
                      f"{state}) at {entry.path}", highlight=False)
        gguf = entry.gguf
        if gguf is not None:
            how = "converted to float32 safetensors" if gguf.converted else "loaded directly by workers"
            console.print(f"  from GGUF {gguf.path} ({gguf.quantization or '?'}, "
                          f"sha256 {gguf.sha256[:16]}…), {how}", highlight=False)
    return render


def fmt_format(m: ModelEntry) -> str:
    """`safetensors`, or `gguf Q4_1` (a GGUF's quantization as published)."""
    return " ".join(x for x in (m.format or "safetensors", m.quantization) if x)


def render_list(catalog: Catalog, console: Console) -> None:
    models = catalog.models
    if not models:
        console.print(f"No models in the catalog of pool {catalog.pool_id}. "
                      "Register one: llorch-pool models register tinyllama", highlight=False)
        return
    t = Table(title=f"Models on {catalog.pool_id}")
    from llorch_tui.pool.cli.fingerprint_cmd import brief

    # the reference column only once some model has one: the seed's table stays as it was otherwise
    refs = any(m.fingerprint is not None for m in models)
    for col in ("ID", "Name", "Downloaded", "Size", "Architecture", "Backends") + (("Reference",) if refs else ()):
        t.add_column(col, overflow="fold", no_wrap=col == "ID")
    for m in models:
        # the format only where it is not the default, so the common table keeps its width
        fmt = fmt_format(m)
        arch = m.architecture + ("" if fmt == "safetensors" else f"\n[dim]{fmt}[/]")
        t.add_row(m.id, m.name, "[green]yes[/]" if m.downloaded else "[red]no[/]",
                  fmt_size_gb(m.size_gb), arch, " ".join(m.backends),
                  *((brief(m.fingerprint),) if refs else ()))
    console.print(t)


def render_catalog(catalog: Catalog, console: Console) -> None:
    """The seed project's table (ID, Name, Downloaded, Size) plus what llorch knows besides."""
    models = catalog.models
    t = Table(title=f"Model Catalog for {catalog.pool_id}", show_lines=bool(models))
    for col in ("ID", "Name / repo", "Downloaded", "Size", "Arch / source", "Backends", "Last verdicts"):
        # Short columns never wrap; the long ones fold on narrow terminals.
        t.add_column(col, overflow="fold", no_wrap=col == "ID", ratio=2 if col == "Name / repo" else 1)
    for m in models:
        where = m.metadata.repo or m.path
        if m.gguf is not None:
            where = m.gguf.path or where
        t.add_row(m.id, f"{m.name}\n[dim]{where}[/]", "✅" if m.downloaded else "❌",
                  fmt_size_gb(m.size_gb),
                  f"{m.architecture}\n[dim]{m.source} · {fmt_format(m)}[/]",
                  " ".join(m.backends), fmt_verdicts(m.verdicts))
    console.print(t)
    if not models:
        console.print("(empty) Register one: llorch-pool models register tinyllama", highlight=False)


COMMANDS: list[CommandSpec] = [
    CommandSpec(("models", "list"), "list the models in this pool's catalog", no_args, op=ops.MODELS_LIST,
                render=render_list),
    CommandSpec(("models", "catalog"), "the catalog with metadata: source, repo, last verdict per backend", no_args,
                op=ops.MODELS_LIST, render=render_catalog),
    CommandSpec(("models", "register"), "add a model to the catalog (seed presets: only the id; --path: a "
                "checkpoint directory or a GGUF)", _register_args,
                op=ops.MODELS_REGISTER, to_params=_register_params, render=render_entry("registered"),
                events=StageProgress),
    CommandSpec(("models", "unregister"), "remove a model from the catalog (files stay on disk)", _id_arg,
                op=ops.MODELS_UNREGISTER, to_params=lambda a: {"id": a.id}, render=render_entry("unregistered")),
    CommandSpec(("models", "update"), "change a catalog entry, e.g. --downloaded true", _update_args,
                op=ops.MODELS_UPDATE, to_params=_update_params, render=render_entry("updated")),
]
