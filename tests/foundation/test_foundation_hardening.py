"""Small hardening rules of the catalog side: revisions are names, not text; hints that are
commands quote what they paste; a writer killed mid-write leaves no temp file for good."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llorch_tui.errors import LlorchError
from llorch_tui.fsutil import atomic_write_text
from llorch_tui.pool.catalog_store import register_hint
from llorch_tui.pool.ops import AgentSettings, InProcessExecutor


def call(state: Path, op: str, params: dict[str, Any]) -> Any:
    return asyncio.run(InProcessExecutor(AgentSettings(state_dir=state, pool_id="t")).call(op, params, None))


@pytest.mark.parametrize("revision", ["main; rm -rf /", "main\nX: y", "../../etc", "-rf", "a//b", "v1/", "x" * 201, ""])
def test_revision_must_be_a_name(tmp_path: Path, revision: str) -> None:
    for op, params in (("models.register", {"id": "m", "repo": "o/n", "architecture": "llama"}),
                       ("models.download", {"id": "m"})):
        with pytest.raises(LlorchError) as err:
            call(tmp_path, op, {**params, "revision": revision})
        assert err.value.code == "bad_request" and "revision" in err.value.message


def test_good_revisions_pass(tmp_path: Path) -> None:
    for i, rev in enumerate(["main", "v1.0", "refs/pr/1", "a" * 40]):
        entry = call(tmp_path, "models.register", {"id": f"m{i}", "repo": "o/n", "architecture": "llama",
                                                   "revision": rev})
        assert entry["revision"] == rev


def test_register_hint_quotes_the_id() -> None:
    hostile = "x; touch /tmp/pwned $(id)"
    hint = register_hint(hostile)
    commands = [c for c in re.findall(r"`([^`]*)`", hint) if "register" in c or "synth" in c]
    assert len(commands) == 2
    for command in commands:  # pasted into a shell, the id stays one word: nothing else runs
        assert shlex.split(command)[3] == hostile


def test_temp_file_of_a_killed_writer_is_removed(tmp_path: Path) -> None:
    target = tmp_path / "catalog.json"
    atomic_write_text(target, "{}")
    # a writer killed -9 between creating its temp file and renaming it
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    try:
        orphan = tmp_path / f".catalog.json.{writer.pid}.abcd1234.tmp"
        orphan.write_text("{half")
        writer.kill()
        writer.wait()
        alive_writer = tmp_path / f".catalog.json.{os.getpid()}.live0000.tmp"  # a writer still at work
        alive_writer.write_text("{in progress")
        atomic_write_text(target, '{"v": 2}')
        assert not orphan.exists() and alive_writer.exists()
        assert target.read_text() == '{"v": 2}'
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, alive_writer.name])
    finally:
        if writer.poll() is None:
            writer.kill()
