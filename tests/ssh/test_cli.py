"""The `llorch` CLI against real sshd pools: the pool command tree over --host, status --all, doctor, trust."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sshd_env import SshdEnv

from llorch_tui.cli.main import main
from llorch_tui.config import Config, PoolConfig
from llorch_tui.config_load import config_to_toml


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def json_lines(text: str) -> list[dict]:
    return [json.loads(ln) for ln in text.splitlines() if ln.strip().startswith(("{", "["))]


def test_catalog_commands_run_on_the_named_pool(llorch_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli(capsys, "pool", "models", "register", "tinyllama", "--host", "a", "--json")
    assert rc == 0, out + err
    assert json_lines(out)[-1]["id"] == "tinyllama"
    rc, out, _ = run_cli(capsys, "pool", "models", "list", "--host", "a", "--json")
    assert rc == 0 and [m["id"] for m in json_lines(out)[-1]["models"]] == ["tinyllama"]
    # Pool b has its own state: nothing there. Human output is the same table as llorch-pool's.
    rc, out, _ = run_cli(capsys, "pool", "models", "list", "--host", "b")
    assert rc == 0 and "No models" in out
    # An error from the agent comes back with its code, message and hint, and exit 1.
    rc, out, _ = run_cli(capsys, "pool", "models", "unregister", "no-such-model", "--host", "a", "--json")
    assert rc == 1 and json_lines(out)[-1]["error"]["code"] == "not_found"


def test_proxy_jump_naming_a_pool(llorch_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli(capsys, "pool", "models", "list", "--host", "bjump", "--json")
    assert rc == 0, err
    assert json_lines(out)[-1]["pool_id"] == "bjump"


def test_status_all_reports_a_dead_pool_and_the_live_ones(sshd_env: SshdEnv, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    addr, port = sshd_env.unreachable_addr()
    pools = [PoolConfig(**sshd_env.pool_kwargs("a")), PoolConfig(**sshd_env.pool_kwargs("b")),  # type: ignore[arg-type]
             PoolConfig(**sshd_env.pool_kwargs("a", name="dead", host=addr, port=port, connect_timeout_s=2.0))]  # type: ignore[arg-type]
    cfg = tmp_path / "config.toml"
    cfg.write_text(config_to_toml(Config(pools=pools)))
    rc, out, _ = run_cli(capsys, "--config", str(cfg), "pool", "status", "--all", "--json")
    doc = json_lines(out)[-1]
    assert rc == 1  # one pool failed
    assert doc["a"]["pool_id"] == "a" and doc["b"]["pool_id"] == "b"
    assert "cpu" in doc["a"]["backends"]
    assert doc["dead"]["error"]["code"] == "unreachable"
    rc, out, _ = run_cli(capsys, "--config", str(cfg), "pool", "status", "--all")
    assert "pool a" in out and "pool b" in out and "cannot reach" in out.replace("\n", " ")


def test_doctor_reports_both_sides(llorch_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli(capsys, "pool", "doctor", "--host", "a", "--json")
    doc = json_lines(out)[-1]
    checks = {c["name"]: c for c in doc["checks"]}
    assert rc == 0 and doc["ok"], out + err
    assert checks["connection"]["status"] == "ok" and "host key verified" in checks["connection"]["detail"]
    assert checks["pool agent"]["status"] == "ok"
    assert checks["agent session"]["status"] == "ok"
    assert "torch" in checks["worker (torch)"]["detail"] and checks["worker (torch)"]["status"] in ("ok", "warn")
    assert checks["disk"]["status"] in ("ok", "warn")


def test_doctor_says_what_to_fix_when_the_agent_is_missing(sshd_env: SshdEnv, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(config_to_toml(Config(pools=[PoolConfig(**sshd_env.pool_kwargs(  # type: ignore[arg-type]
        "a", agent_command="/opt/none/llorch-pool"))])))
    rc, out, _ = run_cli(capsys, "--config", str(cfg), "pool", "doctor", "--host", "a")
    assert rc == 1
    text = " ".join(out.split())
    assert "What to fix" in text and "pip install llorch llorch-worker" in text


def test_trust_adds_the_key_then_connects(sshd_env: SshdEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kh = tmp_path / "kh" / "known_hosts"
    cfg = tmp_path / "config.toml"
    cfg.write_text(config_to_toml(Config(pools=[PoolConfig(**sshd_env.pool_kwargs("a", known_hosts=str(kh)))])))  # type: ignore[arg-type]
    rc, out, _ = run_cli(capsys, "--config", str(cfg), "pool", "models", "list", "--host", "a", "--json")
    assert rc == 1 and json_lines(out)[-1]["error"]["code"] == "host_key_unknown"
    rc, out, _ = run_cli(capsys, "--config", str(cfg), "pool", "trust", "--host", "a", "--yes", "--json")
    doc = json_lines(out)[-1]
    assert rc == 0 and doc["added"] and doc["status"] == "unknown"
    fp = subprocess.run(["ssh-keygen", "-lf", str(sshd_env.pools["a"].host_key) + ".pub"], capture_output=True,
                        text=True).stdout.split()[1]
    assert doc["fingerprint"] == fp
    rc, out, _ = run_cli(capsys, "--config", str(cfg), "pool", "models", "list", "--host", "a", "--json")
    assert rc == 0
    rc, out, _ = run_cli(capsys, "--config", str(cfg), "pool", "trust", "--host", "a", "--yes", "--json")
    assert json_lines(out)[-1]["status"] == "trusted" and len(kh.read_text().splitlines()) == 1
    # A different key for the same name: refused unless --replace.
    b_key = " ".join(sshd_env.pools["b"].host_pub.split()[:2])
    kh.write_text(f"{kh.read_text().split()[0]} {b_key}\n")
    rc, out, _ = run_cli(capsys, "--config", str(cfg), "pool", "trust", "--host", "a", "--yes", "--json")
    assert rc == 1 and json_lines(out)[-1]["error"]["code"] == "host_key_changed"
    rc, out, _ = run_cli(capsys, "--config", str(cfg), "pool", "trust", "--host", "a", "--yes", "--replace", "--json")
    assert rc == 0 and b_key not in kh.read_text()


def test_the_real_entry_point(llorch_config: Path) -> None:
    r = subprocess.run([str(Path(sys.executable).parent / "llorch"), "pool", "models", "list", "--host", "a"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "tinyllama" in r.stdout
