"""`llorch pool install --host H`: this machine's exact llorch and llorch-worker on a pool, over its SSH connection.

Steps, each reported as a `progress` event {stage, message}:

1. probe   — find Python >= 3.11 on the pool (--python, else python3.13 .. python3), its platform,
             and whether an NVIDIA driver is there (nvidia-smi), to pick torch.
2. check   — the venv (default ~/.local/share/llorch/venv) already has this llorch and llorch-worker
             version and a torch: nothing to do (idempotent) unless --upgrade.
3. venv    — create it (or reuse it); `--torch existing` lets it see the interpreter's packages.
4. build   — `pip wheel --no-deps` of this machine's llorch and llorch-worker source trees (the pool
             needs no access to our source), or the wheels found in --wheelhouse.
5. copy    — SFTP the wheels (and the --wheelhouse) into ~/.cache/llorch/install on the pool (--cache-dir).
6. pip     — dependencies and torch (from the pool's index, or --no-index from the copied wheelhouse),
             then our two wheels with --no-deps --force-reinstall: exactly this build, whatever pip
             found already. A pool that cannot reach an index fails with `network` and the offline route.
7. verify  — `VENV/bin/llorch-pool --version` must print this version.
8. config  — record agent_command = VENV/bin/llorch-pool for the pool (comments kept, atomic).
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict

from llorch_tui import __version__
from llorch_tui.config import PoolConfig
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.transport import make_transport
from llorch_tui.transport.base import RunResult, Transport

PYTHONS = ("python3.13", "python3.12", "python3.11", "python3")
DEFAULT_VENV = "~/.local/share/llorch/venv"
REMOTE_CACHE = "~/.cache/llorch/install"
PIP_TIMEOUT_S = 3600.0  # torch is gigabytes
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
NETWORK_SIGNS = ("Network is unreachable", "Temporary failure in name resolution", "Failed to establish a new connection",
                 "Could not fetch URL", "No matching distribution found", "Max retries exceeded", "ConnectTimeout",
                 "Name or service not known", "Could not find a version that satisfies")
EventSink = Callable[[str, dict[str, Any]], None]

PROBE = """
import json, os, platform, shutil, sys
print(json.dumps({"python": sys.executable, "version": list(sys.version_info[:3]), "platform": sys.platform,
                  "machine": platform.machine(), "nvidia": bool(shutil.which("nvidia-smi")),
                  "venv": sys.prefix != sys.base_prefix, "home": os.path.expanduser("~")}))
"""


class HostProbe(BaseModel):
    """What PROBE prints about a pool's Python (another process's answer: read through this model)."""

    model_config = ConfigDict(extra="ignore")

    python: str
    version: list[int]
    platform: str
    machine: str = ""
    nvidia: bool = False
    venv: bool = False  # the interpreter is itself a virtualenv's
    home: str


# Our two packages count only when installed in the venv itself (not seen through --torch existing).
INSTALLED = """
import json, os, sys
from importlib import metadata
out = {}
for name in ("llorch", "llorch-worker", "torch"):
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        out[name] = None
        continue
    here = os.path.realpath(str(dist.locate_file(""))).startswith(os.path.realpath(sys.prefix) + os.sep)
    out[name] = dist.version if (here or name == "torch") else None
print(json.dumps(out))
"""
# Every package directory an interpreter sees (a venv layered over another by .pth files sees both).
SITE = "import json, sys; print(json.dumps([p for p in sys.path if p.rstrip('/').endswith(('site-packages', 'dist-packages'))]))"


@dataclass
class InstallOptions:
    python: str | None = None
    venv: str = DEFAULT_VENV
    # auto | cpu | cuda | metal | existing (the interpreter's own) | none (agent only) | a requirement (torch==2.5.1)
    torch: str = "auto"
    wheelhouse: Path | None = None
    index_url: str | None = None
    upgrade: bool = False
    record: bool = True  # write agent_command into the config
    cache_dir: str = REMOTE_CACHE  # on the pool: where the wheels are copied to (a "~" is the pool's home)


@dataclass
class InstallResult:
    pool: str
    venv: str
    agent_command: str
    version: str
    noop: bool
    python: str
    torch: str | None
    installed: dict[str, str | None] = field(default_factory=dict)
    config: str | None = None
    steps: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def source_tree(package_dir: Path) -> Path | None:
    """The project directory holding a package's pyproject.toml (a checkout or an editable install)."""
    root = package_dir.parent
    return root if (root / "pyproject.toml").is_file() else None


def build_wheels(out: Path) -> list[Path]:
    """Wheels of this machine's llorch and llorch-worker, exactly as installed here (their source trees)."""
    import llorch_tui

    roots: list[Path] = []
    tree = source_tree(Path(llorch_tui.__file__).parent)
    if tree is None:
        raise LlorchError(ErrorCode.NOT_FOUND, "this llorch was not installed from a source tree: no wheel to build",
                          "pass --wheelhouse DIR holding llorch and llorch-worker wheels of this version "
                          f"({__version__}), e.g. from `pip download llorch=={__version__} llorch-worker=={__version__}`")
    roots.append(tree)
    if (tree / "worker" / "pyproject.toml").is_file():
        roots.append(tree / "worker")
    for root in roots:
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(out), str(root)], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise LlorchError(ErrorCode.INTERNAL, f"building the wheel of {root} failed: {r.stderr.strip()[-800:]}",
                              "run `pip wheel --no-deps .` in that directory to see why")
    return sorted(out.glob("*.whl"))


def own_wheels(directory: Path) -> list[Path]:
    """llorch and llorch-worker wheels of this exact version in a directory."""
    pat = re.compile(rf"^llorch(_worker)?-{re.escape(__version__)}-.*\.whl$")
    return sorted(p for p in directory.glob("*.whl") if pat.match(p.name))


def torch_requirement(choice: str, probe: HostProbe) -> tuple[list[str], list[str]]:
    """(requirements, extra pip args) for the pool's torch."""
    if choice in ("none", "existing"):
        return [], []
    if choice == "auto":
        if probe.platform == "darwin":
            choice = "metal"  # the PyPI build has MPS
        else:
            choice = "cuda" if probe.nvidia else "cpu"
    if choice == "cpu" and probe.platform == "linux":
        return ["torch"], ["--extra-index-url", TORCH_CPU_INDEX]
    if choice in ("cpu", "cuda", "metal"):
        return ["torch"], []  # PyPI's Linux build is the CUDA one; macOS's has MPS
    return [choice], []


class Installer:
    def __init__(self, pool: PoolConfig, opts: InstallOptions, on_event: EventSink | None = None,
                 transport: Transport | None = None) -> None:
        self.pool, self.opts, self.on_event = pool, opts, on_event
        self.t = transport or make_transport(pool)
        self.steps: list[str] = []

    def say(self, stage: str, message: str) -> None:
        self.steps.append(f"{stage}: {message}")
        if self.on_event is not None:
            self.on_event("progress", {"stage": stage, "message": message, "pool": self.pool.name})

    async def run(self, argv: list[str], timeout: float = 120) -> RunResult:
        return await self.t.run(argv, self.t.agent_env(), timeout=timeout)

    async def probe(self) -> HostProbe:
        tried: list[str] = []
        for py in ([self.opts.python] if self.opts.python else list(PYTHONS)):
            r = await self.run([py, "-c", PROBE], timeout=60)
            if r.rc != 0:
                tried.append(f"{py}: {'not found' if r.rc == 127 else (r.stderr.strip().splitlines() or ['?'])[-1]}")
                continue
            info = HostProbe.model_validate_json(r.stdout.strip().splitlines()[-1])
            if tuple(info.version) >= (3, 11):
                return info
            tried.append(f"{py}: Python {'.'.join(map(str, info.version))}")
        raise LlorchError(ErrorCode.NOT_FOUND, f"no Python >= 3.11 on pool {self.pool.name} ({'; '.join(tried)})",
                          "install Python 3.11 or newer there (e.g. `apt install python3.11-venv`, `brew install "
                          "python@3.12`, uv, pyenv), or name one with --python PATH")

    def remote(self, path: str, home: str) -> str:
        return home + path[1:] if path.startswith("~") else path

    async def installed(self, vpy: str) -> dict[str, str | None] | None:
        r = await self.run([vpy, "-c", INSTALLED], timeout=120)
        if r.rc != 0:
            return None
        return dict(json.loads(r.stdout.strip().splitlines()[-1]))

    async def install(self) -> InstallResult:
        await self.t.connect()
        info = await self.probe()
        home = info.home
        venv = self.remote(self.opts.venv, home)
        vpy = f"{venv}/bin/python"
        agent = f"{venv}/bin/llorch-pool"
        self.say("probe", f"Python {'.'.join(map(str, info.version))} at {info.python} ({info.platform} "
                          f"{info.machine}{', NVIDIA driver' if info.nvidia else ''})")
        have = await self.installed(vpy)
        agent_only = self.opts.torch == "none"  # no worker, no torch: catalog, downloads, mirror
        current = bool(have and have.get("llorch") == __version__
                       and (agent_only or (have.get("llorch-worker") == __version__ and have.get("torch"))))
        if current and not self.opts.upgrade:
            assert have is not None
            self.say("check", f"llorch {__version__}, llorch-worker {__version__}, torch {have.get('torch')} already "
                              f"in {venv}: nothing to do (--upgrade reinstalls)")
            return await self._finish(info, venv, agent, have, noop=True)
        if have is None:
            await self._make_venv(info, venv)
        else:
            self.say("venv", f"reusing {venv} (llorch {have.get('llorch') or 'absent'} there, {__version__} here)")
        with tempfile.TemporaryDirectory(prefix="llorch-wheels-") as tmp:
            wheels = own_wheels(self.opts.wheelhouse) if self.opts.wheelhouse else []
            if len(wheels) < 2:
                self.say("build", f"building llorch {__version__} and llorch-worker wheels from this machine's source")
                wheels = await asyncio.to_thread(build_wheels, Path(tmp))
            if agent_only:
                wheels = [w for w in wheels if not w.name.startswith("llorch_worker-")]
            cache = self.remote(self.opts.cache_dir, home)
            remote_wheels = await self._copy(wheels, cache)
            await self._pip(info, vpy, remote_wheels, cache)
        after = await self.installed(vpy)
        r = await self.run([agent, "--version"], timeout=120)
        got = r.stdout.strip().split()[-1] if r.rc == 0 and r.stdout.strip() else None
        if got != __version__:
            raise LlorchError(ErrorCode.INTERNAL, f"{agent} --version printed {r.stdout.strip() or r.stderr.strip()[-300:]!r},"
                              f" expected llorch {__version__}", "run it on the pool; reinstall with --upgrade")
        self.say("verify", f"{agent} --version: {got}")
        return await self._finish(info, venv, agent, after or {}, noop=False)

    async def _finish(self, info: HostProbe, venv: str, agent: str, have: dict[str, str | None],
                      noop: bool) -> InstallResult:
        return InstallResult(pool=self.pool.name, venv=venv, agent_command=agent, version=__version__, noop=noop,
                             python=info.python, torch=have.get("torch"), installed=have, steps=self.steps)

    async def _make_venv(self, info: HostProbe, venv: str) -> None:
        argv = [info.python, "-m", "venv"]
        if self.opts.torch == "existing":
            argv.append("--system-site-packages")
        self.say("venv", f"creating {venv}" + (" (seeing the interpreter's packages: --torch existing)"
                                                 if self.opts.torch == "existing" else ""))
        await self.run(["sh", "-c", 'mkdir -p "$(dirname "$1")"', "sh", venv], timeout=60)
        r = await self.run([*argv, venv], timeout=600)
        if r.rc != 0:
            raise LlorchError(ErrorCode.INTERNAL, f"`{shlex.join(argv + [venv])}` failed on pool {self.pool.name}: "
                              f"{r.stderr.strip()[-500:]}",
                              "on Debian/Ubuntu install the venv module (apt install python3-venv), or pass --python")
        if self.opts.torch == "existing":
            # Python 3.11's venv bundles an old setuptools, which would shadow the interpreter's own and
            # fail torch's requirement on it: the interpreter's packages are what --torch existing means.
            await self.run([f"{venv}/bin/python", "-m", "pip", "uninstall", "-y", "-q", "setuptools"], timeout=120)
        if self.opts.torch == "existing" and info.venv:
            # --python names a virtualenv: --system-site-packages reaches only its base interpreter, so
            # its own site-packages (where its torch is) is added behind the new venv's own.
            r = await self.run([info.python, "-c", SITE], timeout=60)
            dirs = json.loads(r.stdout.strip().splitlines()[-1]) if r.rc == 0 else []
            r2 = await self.run([f"{venv}/bin/python", "-c", SITE], timeout=60)
            own = json.loads(r2.stdout.strip().splitlines()[-1]) if r2.rc == 0 else []
            mine = next((p for p in own if p.startswith(venv)), None)
            dirs = [p for p in dirs if p not in own]
            if dirs and mine:
                text = "\n".join(dirs) + "\n"
                await self.run(["sh", "-c", 'printf "%s" "$1" > "$2"', "sh", text, f"{mine}/llorch-existing-torch.pth"])

    async def _copy(self, wheels: list[Path], cache: str) -> list[str]:
        files = list(wheels)
        if self.opts.wheelhouse:
            files += [p for p in sorted(self.opts.wheelhouse.iterdir()) if p.is_file() and p not in wheels]
        r = await self.run(["mkdir", "-p", cache, f"{cache}/wheelhouse"], timeout=60)
        if r.rc != 0:
            raise LlorchError(ErrorCode.INTERNAL, f"cannot create {cache} on pool {self.pool.name}: {r.stderr.strip()}")
        listing = await self.run(["sh", "-c", 'cd "$1" && for f in *; do [ -f "$f" ] && echo "$f $(wc -c < "$f")"; done',
                                  "sh", f"{cache}/wheelhouse"], timeout=60)
        there = dict(line.rsplit(" ", 1) for line in listing.stdout.splitlines() if " " in line)
        total = sum(p.stat().st_size for p in files)
        self.say("copy", f"{len(files)} files ({total / 1e6:.1f} MB) to {cache}/wheelhouse over SFTP")
        out = []
        for p in files:
            dest = f"{cache}/wheelhouse/{p.name}"
            if p in wheels or there.get(p.name, "").strip() != str(p.stat().st_size):
                await self.t.put_file(str(p), dest)
            if p in wheels:
                out.append(dest)
        return out

    async def _pip(self, info: HostProbe, vpy: str, wheels: list[str], cache: str) -> None:
        torch, extra = torch_requirement(self.opts.torch, info)
        pip = [vpy, "-m", "pip", "install", "--disable-pip-version-check", "--retries", "2", "--timeout", "30"]
        if self.opts.wheelhouse:
            pip += ["--no-index", "--find-links", f"{cache}/wheelhouse"]
            extra = []
        elif self.opts.index_url:
            pip += ["--index-url", self.opts.index_url]
        if self.opts.upgrade:
            pip.append("--upgrade")
        what = f"dependencies{' and ' + ', '.join(torch) if torch else ''}"
        self.say("pip", f"installing {what} " + ("from the copied wheelhouse (offline)" if self.opts.wheelhouse
                                                  else "from the pool's package index"))
        r = await self.run([*pip, *extra, *wheels, *torch], timeout=PIP_TIMEOUT_S)
        if r.rc != 0:
            self._pip_failed(r)
        self.say("pip", f"installing {', '.join(Path(w).name for w in wheels)} (this exact build)")
        r = await self.run([vpy, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps", "--force-reinstall",
                            "--no-index", *wheels], timeout=600)
        if r.rc != 0:
            self._pip_failed(r)

    def _pip_failed(self, r: RunResult) -> None:
        tail = "\n".join(r.stderr.strip().splitlines()[-6:])
        if not self.opts.wheelhouse and any(s in r.stderr for s in NETWORK_SIGNS):
            raise LlorchError(
                ErrorCode.NETWORK, f"pool {self.pool.name} cannot install from a package index: {tail[-600:]}",
                "offline route: on a machine with the same OS, CPU architecture and Python, "
                "`pip download -d DIR llorch-worker torch` (or `pip wheel`), then "
                f"`llorch pool install --host {self.pool.name} --wheelhouse DIR` copies DIR over and installs from it; "
                "or give the pool a reachable index with --index-url / pip.conf")
        raise LlorchError(ErrorCode.INTERNAL, f"pip failed on pool {self.pool.name}: {tail[-800:]}",
                          "the lines above are pip's; fix that and run the install again (it is idempotent)")

    async def close(self) -> None:
        await self.t.close()


def config_target(config_arg: str | None, source: Path | None) -> tuple[Path, bool]:
    """(the configuration file agent_command is recorded in, whether it exists): the one loaded, else
    --config / $LLORCH_CONFIG / the default path (created from the built-in configuration)."""
    import os

    from llorch_tui.paths import config_file

    if source is not None:
        return source, True
    path = Path(config_arg or os.environ.get("LLORCH_CONFIG") or config_file()).expanduser()
    return path, path.exists()


async def install_pool(pool: PoolConfig, opts: InstallOptions, on_event: EventSink,
                       config: tuple[Path, bool] | None, transport: Transport | None = None) -> InstallResult:
    """Install, then record the pool's agent_command in `config` (path, exists) when it changed: what
    `llorch pool install` and the dashboard's install action both do."""
    from llorch_tui.fleet_ops.config_edit import set_pool_setting

    inst = Installer(pool, opts, on_event, transport)
    try:
        result = await inst.install()
    finally:
        await inst.close()
    if opts.record and config is not None and pool.agent_command != result.agent_command:
        path, exists = config
        await asyncio.to_thread(set_pool_setting, path, exists, pool, "agent_command", result.agent_command)
        result.config = str(path)
        on_event("progress", {"stage": "config", "message": f"agent_command = {result.agent_command} for pool "
                              f"{pool.name} in {path}", "pool": pool.name})
    return result
