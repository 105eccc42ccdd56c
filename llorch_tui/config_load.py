"""Find, read, validate and write the operator's configuration, remembering where each part came from.

Lookup: an explicit path (--config), $LLORCH_CONFIG, ~/.config/llorch/config.toml, else the
embedded default. A file that defines no pools gets the embedded `local` pool; model presets
are the four seed presets overlaid by the file's (the file wins by id). Every problem becomes
one LlorchError(CONFIG_INVALID) naming the file, the key path (`pools[1].prot`) and the fix.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ValidationError

from llorch_tui.config import (SEED_PRESETS, Config, MatrixConfig, ModelPreset, PoolConfig,
                               default_config)
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.fsutil import save_state_file
from llorch_tui.paths import config_file

EMBEDDED = "embedded default"
# Where each section's schema lives, to list the known keys when one is misspelt.
_SECTION_MODELS: dict[str, type[BaseModel]] = {"pools": PoolConfig, "models": ModelPreset, "matrix": MatrixConfig}


@dataclass
class LoadedConfig:
    config: Config
    source: Path | None  # None: nothing was read, the embedded default is in effect
    # "pools.NAME", "models.ID", "matrix" -> a file path (+ how it was found) or "embedded default".
    provenance: dict[str, str] = field(default_factory=dict)
    found_by: str = EMBEDDED  # "--config", "$LLORCH_CONFIG", "default location" or "embedded default"


def _locate(path: str | os.PathLike[str] | None) -> tuple[Path | None, str]:
    if path:
        return Path(path).expanduser(), "--config"
    env = os.environ.get("LLORCH_CONFIG")
    if env:
        return Path(env).expanduser(), "$LLORCH_CONFIG"
    default = config_file()
    return (default, "default location") if default.is_file() else (None, EMBEDDED)


def load_config(path: str | os.PathLike[str] | None = None) -> LoadedConfig:
    """The effective configuration. An explicitly named file (flag or env) must exist."""
    source, found_by = _locate(path)
    if source is None:
        cfg = default_config()
        prov = {f"pools.{p.name}": EMBEDDED for p in cfg.pools}
        prov.update({f"models.{m.id}": EMBEDDED for m in cfg.models})
        prov["matrix"] = EMBEDDED
        return LoadedConfig(cfg, None, prov, EMBEDDED)
    raw = _read_toml(source, found_by)
    file_cfg = _validate(raw, source)
    return _merge(file_cfg, raw, source, found_by)


def _read_toml(source: Path, found_by: str) -> dict[str, Any]:
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LlorchError(ErrorCode.CONFIG_INVALID, f"configuration file {source} (named by {found_by}) does not exist",
                          "create one with `llorch config init --path " + str(source) + "`, or fix the path",
                          file=str(source)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LlorchError(ErrorCode.CONFIG_INVALID, f"cannot read configuration file {source}: {exc}",
                          "check the file's permissions and that it is UTF-8 text", file=str(source)) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line, col = _toml_position(exc, text)
        where = f" at line {line}, column {col}" if line else ""
        raise LlorchError(ErrorCode.CONFIG_INVALID, f"{source}: TOML syntax error{where}: {_toml_reason(exc)}",
                          "fix the syntax there (quote strings, close brackets); "
                          "`llorch config init --path NEW` writes a valid commented example",
                          file=str(source), line=line, column=col) from None


def _toml_reason(exc: tomllib.TOMLDecodeError) -> str:
    return re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)\s*$", "", str(exc))


def _toml_position(exc: tomllib.TOMLDecodeError, text: str) -> tuple[int | None, int | None]:
    line, col = getattr(exc, "lineno", None), getattr(exc, "colno", None)
    if line:
        return line, col
    m = re.search(r"line (\d+), column (\d+)", str(exc))
    if m:
        return int(m.group(1)), int(m.group(2))
    if "end of document" in str(exc):  # report the last line rather than nothing
        lines = text.splitlines() or [""]
        return len(lines), len(lines[-1]) + 1
    return None, None


def key_path(loc: tuple[Any, ...]) -> str:
    """('pools', 1, 'prot') -> 'pools[1].prot'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    names = [p for p in loc if isinstance(p, str)]
    model: type[BaseModel] = Config
    for n in names[:-1]:
        model = _SECTION_MODELS.get(n, model)
    return sorted(model.model_fields)


def _validate(raw: dict[str, Any], source: Path) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err.get("loc", ()))
        where = key_path(loc)
        kind, msg = err.get("type", ""), str(err.get("msg", ""))
        if kind == "extra_forbidden":
            known = _known_keys(loc)
            near = difflib.get_close_matches(str(loc[-1]), known, n=1)
            fix = (f"did you mean {near[0]!r}? " if near else "") + f"known keys here: {', '.join(known)}"
            message = f"{source}: unknown key {where}"
        elif kind == "missing":
            message, fix = f"{source}: missing required key {where}", "add it (see config.example.toml)"
        elif kind == "value_error":
            msg = msg.removeprefix("Value error, ")
            fix = "fix that value; `llorch config init --path NEW` writes a commented example of every key"
            if msg.startswith("duplicate"):
                where = "pools" if "pool" in msg else "models"
                fix = f"give every entry of [[{where}]] its own {'name' if where == 'pools' else 'id'}"
            elif "needs host" in msg:
                where += ".host"
                fix = 'add host = "HOSTNAME" (or an alias from ~/.ssh/config), or use transport = "local"'
            message = f"{source}: {where}: {msg}"
        else:
            got = err.get("input")
            shown = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
            message, fix = f"{source}: {where}: {msg}{shown}", "give the value the type shown in config.example.toml"
        extra = f" ({len(exc.errors()) - 1} more problem(s) after this one)" if len(exc.errors()) > 1 else ""
        raise LlorchError(ErrorCode.CONFIG_INVALID, message + extra, fix, file=str(source), key=where) from None
    except LlorchError as exc:  # an id/name validator raised our own error: find which key it was
        where = _bad_name_key(raw)
        raise LlorchError(ErrorCode.CONFIG_INVALID, f"{source}: {where}: {exc.message}", exc.hint,
                          file=str(source), key=where) from None


def _bad_name_key(raw: dict[str, Any]) -> str:
    from llorch_tui.protocol.catalog import MODEL_ID_RE

    for section, key in (("pools", "name"), ("models", "id")):
        items = raw.get(section)
        for i, item in enumerate(items if isinstance(items, list) else []):
            value = item.get(key) if isinstance(item, dict) else None
            if isinstance(value, str) and (not MODEL_ID_RE.match(value) or ".." in value):
                return f"{section}[{i}].{key}"
    return "(top level)"


def _merge(file_cfg: Config, raw: dict[str, Any], source: Path, found_by: str) -> LoadedConfig:
    label = str(source) if found_by in ("--config", "default location") else f"{source} ({found_by})"
    prov: dict[str, str] = {}
    if file_cfg.pools:
        pools = list(file_cfg.pools)
        prov.update({f"pools.{p.name}": label for p in pools})
    else:
        pools = list(default_config().pools)
        prov.update({f"pools.{p.name}": EMBEDDED for p in pools})
    file_ids = {m.id for m in file_cfg.models}
    models = [m for m in SEED_PRESETS if m.id not in file_ids] + list(file_cfg.models)
    prov.update({f"models.{m.id}": (label if m.id in file_ids else EMBEDDED) for m in models})
    prov["matrix"] = label if "matrix" in raw else EMBEDDED
    merged = Config(pools=pools, models=models, matrix=file_cfg.matrix)
    return LoadedConfig(merged, source, prov, found_by)


def config_to_toml(config: Config) -> str:
    return tomli_w.dumps(config.model_dump(mode="json", exclude_none=True))


def write_config(path: str | os.PathLike[str], config: Config | str, force: bool = False) -> Path:
    """Write a config (a Config, or ready TOML text) atomically; never replaces a file unless force."""
    target = Path(path).expanduser()
    if target.exists() and not force:
        raise LlorchError(ErrorCode.ALREADY_EXISTS, f"{target} already exists; not overwriting it",
                          "pass --force to replace it, or choose another --path", file=str(target))
    text = config if isinstance(config, str) else config_to_toml(config)
    if isinstance(config, str):  # never write a file we could not load back
        try:
            Config.model_validate(tomllib.loads(text))
        except (tomllib.TOMLDecodeError, ValidationError) as exc:
            raise LlorchError(ErrorCode.CONFIG_INVALID, f"refusing to write an invalid configuration: {exc}") from None
    save_state_file(target, text, "configuration")
    return target
