"""The real `llorch-tui` in a real terminal (tmux): type keys, read the screen, quit, nothing left running."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def tmux(sock: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True, timeout=10)


def wait_screen(sock: str, needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = tmux(sock, "capture-pane", "-p", "-t", "tui").stdout
        if needle in screen:
            return screen
        time.sleep(0.1)  # polling the terminal: tmux has no "screen changed" event
    raise AssertionError(f"{needle!r} never appeared on the screen; last screen:\n{screen}")


def wait_gone(sock: str, needle: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while needle in tmux(sock, "capture-pane", "-p", "-t", "tui").stdout:
        assert time.monotonic() < deadline, f"{needle!r} is still on the screen"
        time.sleep(0.1)


def agents_of(state: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info.get("cmdline") or []
        if "serve" in cmd and str(state) in cmd:
            found.append(p)
    return found


@pytest.mark.parametrize("width,height", [(120, 40), (80, 24)])
def test_tui_in_tmux(tui_pool: Path, tmp_path: Path, width: int, height: int) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[[pools]]\nname = "local"\nstate_dir = "{tui_pool}"\n')
    keymap = tmp_path / "keymap.toml"
    keymap.write_text('[keymap]\nhelp = "h"\n')  # remapped: ? no longer opens help, h does
    sock = f"llorch-test-{uuid.uuid4().hex[:8]}"
    exe = str(Path(sys.executable).with_name("llorch-tui"))
    env = f"LLORCH_KEYMAP={keymap} TERM=xterm-256color"
    tmux(sock, "-f", "/dev/null", "new-session", "-d", "-s", "tui", "-x", str(width), "-y", str(height),
         f"env {env} {exe} --config {cfg}")
    try:
        tmux(sock, "resize-window", "-t", "tui", "-x", str(width), "-y", str(height))
        screen = wait_screen(sock, "tiny-llama")
        screen = wait_screen(sock, "online")
        lines = screen.rstrip("\n").split("\n")
        assert len(lines) <= height and all(len(line) <= width for line in lines)
        # How to get help and how to leave stay in the footer (the last line) at any size.
        assert "q Quit" in lines[-1] and "h Help" in lines[-1], lines[-1]
        assert "╭─ Catalog" in screen and "╭─ Workers" in screen  # titled panes
        tmux(sock, "send-keys", "-t", "tui", "h")
        screen = wait_screen(sock, "Keys")
        assert "h Help — id help" in screen
        tmux(sock, "send-keys", "-t", "tui", "Escape")
        wait_gone(sock, "Keys")  # ESC is only a key once the terminal's escape-sequence timeout passed
        tmux(sock, "send-keys", "-t", "tui", "2")
        wait_screen(sock, "No run yet")
        tmux(sock, "send-keys", "-t", "tui", "q")
        deadline = time.monotonic() + 30
        while tmux(sock, "has-session", "-t", "tui").returncode == 0:
            assert time.monotonic() < deadline, "llorch-tui did not quit on q"
            time.sleep(0.1)
        deadline = time.monotonic() + 10
        while agents_of(tui_pool):
            assert time.monotonic() < deadline, f"agent left running: {agents_of(tui_pool)}"
            time.sleep(0.1)
    finally:
        tmux(sock, "kill-server")
