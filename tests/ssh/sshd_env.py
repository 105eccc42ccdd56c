"""Real OpenSSH sshd servers for the SSH tests and bench/ssh.py.

Each pool gets a network namespace of its own (a veth pair to the host, addresses
10.231.N.0/24 that we create and delete), its own host key and sshd config, and runs
`/usr/sbin/sshd -D -e` inside it. Pool B is also linked to pool A by a second veth pair on
an address the host has no route to, so a ProxyJump through A is the only way to reach it
there. Without root or `ip netns` we fall back to loopback aliases (127.0.0.2, 127.0.0.3).

Everything we start is torn down by `close()`: every process inside our namespaces (sshd,
its sessions, agents and the detached workers they spawned), then the namespaces. In the
loopback fallback the workers are stopped through each pool's agent.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SSHD = "/usr/sbin/sshd"
REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
AGENT = str(VENV_BIN / "llorch-pool")
LOCK = Path(tempfile.gettempdir()) / "llorch-ssh-netns.lock"

SSHD_CONFIG = """\
ListenAddress {addr}
Port {port}
HostKey {host_key}
AuthorizedKeysFile {authorized_keys}
PidFile none
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
MaxSessions 10
AllowTcpForwarding yes
PermitUserEnvironment no
LogLevel VERBOSE
Subsystem sftp internal-sftp
"""


def sshd_available() -> str | None:
    """None when real sshd tests can run here, else why not."""
    if not Path(SSHD).exists():
        return f"{SSHD} missing (apt-get install -y openssh-server)"
    if not shutil.which("ssh-keygen"):
        return "ssh-keygen missing (apt-get install -y openssh-client)"
    return None


def _netns_usable() -> bool:
    if os.environ.get("LLORCH_TEST_SSHD_LOOPBACK") == "1":  # force the fallback (to test it)
        return False
    if os.geteuid() != 0 or not shutil.which("ip"):
        return False
    probe = f"llorch-probe-{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ok


def _kill_namespace(ns: str) -> None:
    """Every process in a namespace we created is ours: sessions, agents, detached workers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        procs = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), sig)
            with contextlib.suppress(psutil.Error, ValueError):
                procs.append(psutil.Process(int(pid)))
        psutil.wait_procs(procs, timeout=5)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _remove_stale_namespaces() -> None:
    """Namespaces left by a session that was SIGKILLed (its pid is gone) are removed before starting."""
    for line in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines():
        m = re.match(r"llorch-(\d+)-\w+$", line.split()[0]) if line.strip() else None
        if m and not psutil.pid_exists(int(m.group(1))):
            _kill_namespace(line.split()[0])


def _sh(*argv: str) -> None:
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {r.stderr.strip()}")


def _free_port(addr: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


@dataclass
class Pool:
    name: str
    addr: str  # where the host reaches it ("" when only reachable through a jump)
    port: int
    state_dir: Path
    host_key: Path
    netns: str | None = None
    inner_addr: str | None = None  # address on the A<->B link (b's: the ProxyJump target; a's: its LAN address)
    proc: subprocess.Popen | None = None
    stderr_lines: list[str] = field(default_factory=list)

    @property
    def host_pub(self) -> str:
        return Path(str(self.host_key) + ".pub").read_text().strip()

    def session_pids(self) -> list[int]:
        """sshd per-connection children (killing one drops that client connection)."""
        if not self.proc:
            return []
        try:
            return [c.pid for c in psutil.Process(self.proc.pid).children() if c.name().startswith("sshd")]
        except psutil.NoSuchProcess:
            return []


class SshdEnv:
    """Starts pools `a` and `b` (b also reachable through a), plus the client key and known_hosts."""

    def __init__(self, root: Path | None = None, pools: tuple[str, ...] = ("a", "b")) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="llorch-sshd-"))
        self.client_key = self.root / "client_key"
        self.known_hosts = self.root / "known_hosts"
        self.ssh_config = self.root / "ssh_config"
        self.authorized_keys = self.root / "authorized_keys"
        self.use_netns = _netns_usable()
        self.pools: dict[str, Pool] = {}
        self._names = pools
        self._netns: list[str] = []
        self._host_veths: list[str] = []
        self._closed = False

    # -- setup --------------------------------------------------------------------------
    def start(self) -> "SshdEnv":
        try:
            self._keys()
            if self.use_netns:
                self._make_namespaces()
            else:
                for i, n in enumerate(self._names):
                    self.pools[n] = self._pool(n, f"127.0.0.{i + 2}", _free_port(f"127.0.0.{i + 2}"))
                if "b" in self.pools:
                    self.pools["b"].inner_addr = self.pools["b"].addr
            for p in self.pools.values():
                self._start_sshd(p)
            self._write_known_hosts()
            self._write_ssh_config()
        except BaseException:
            self.close()
            raise
        return self

    def _keys(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "llorch-test-client", "-f", str(self.client_key))
        self.authorized_keys.write_text(Path(str(self.client_key) + ".pub").read_text())

    def _pool(self, name: str, addr: str, port: int) -> Pool:
        d = self.root / f"pool-{name}"
        (d / "state").mkdir(parents=True)
        key = d / "host_key"
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"pool-{name}", "-f", str(key))
        return Pool(name=name, addr=addr, port=port, state_dir=d / "state", host_key=key)

    def _make_namespaces(self) -> None:
        import filelock

        tag = f"{os.getpid() % 100000}"
        with filelock.FileLock(str(LOCK)):
            _remove_stale_namespaces()
            used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
            block = next(b for b in range(1, 60) if f"10.231.{b * 4}." not in used and f"10.231.{b * 4 + 1}." not in used)
            for i, n in enumerate(self._names):
                ns = f"llorch-{os.getpid()}-{n}"  # the full pid: a stale one is recognised by it
                hv, nv = f"lh{tag}{n}", f"ln{tag}{n}"
                net = f"10.231.{block * 4 + i}"
                _sh("ip", "netns", "add", ns)
                self._netns.append(ns)
                _sh("ip", "link", "add", hv, "type", "veth", "peer", "name", nv)
                self._host_veths.append(hv)
                _sh("ip", "link", "set", nv, "netns", ns)
                _sh("ip", "addr", "add", f"{net}.1/24", "dev", hv)
                _sh("ip", "link", "set", hv, "up")
                _sh("ip", "-n", ns, "addr", "add", f"{net}.2/24", "dev", nv)
                _sh("ip", "-n", ns, "link", "set", nv, "up")
                _sh("ip", "-n", ns, "link", "set", "lo", "up")
                p = self._pool(n, f"{net}.2", 22)
                p.netns = ns
                self.pools[n] = p
            if "a" in self.pools and "b" in self.pools:
                # a <-> b link: the host has no route to this /24, only pool a does.
                link = f"10.231.{block * 4 + 3}"
                va, vb = f"la{tag}", f"lb{tag}"
                _sh("ip", "link", "add", va, "type", "veth", "peer", "name", vb)
                _sh("ip", "link", "set", va, "netns", self.pools["a"].netns)
                _sh("ip", "link", "set", vb, "netns", self.pools["b"].netns)
                _sh("ip", "-n", self.pools["a"].netns, "addr", "add", f"{link}.1/24", "dev", va)
                _sh("ip", "-n", self.pools["b"].netns, "addr", "add", f"{link}.2/24", "dev", vb)
                _sh("ip", "-n", self.pools["a"].netns, "link", "set", va, "up")
                _sh("ip", "-n", self.pools["b"].netns, "link", "set", vb, "up")
                self.pools["b"].inner_addr = f"{link}.2"
                self.pools["a"].inner_addr = f"{link}.1"

    def _start_sshd(self, p: Pool) -> None:
        conf = p.state_dir.parent / "sshd_config"
        listen = "0.0.0.0" if p.netns else p.addr
        conf.write_text(SSHD_CONFIG.format(addr=listen, port=p.port, host_key=p.host_key,
                                           authorized_keys=self.authorized_keys))
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation dir
        argv = [SSHD, "-D", "-e", "-f", str(conf)]
        if p.netns:
            argv = ["ip", "netns", "exec", p.netns, *argv]
        p.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                  start_new_session=True)
        ready = threading.Event()

        def pump() -> None:
            assert p.proc and p.proc.stderr
            for line in p.proc.stderr:
                p.stderr_lines.append(line.rstrip())
                if "Server listening on" in line:
                    ready.set()
            ready.set()  # sshd exited: stop waiting, the check below reports it

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(20) or p.proc.poll() is not None:
            raise RuntimeError(f"sshd for pool {p.name} did not start: " + "\n".join(p.stderr_lines[-10:]))

    def _write_known_hosts(self) -> None:
        lines = []
        for p in self.pools.values():
            for a in filter(None, {p.addr, p.inner_addr}):
                host = a if p.port == 22 else f"[{a}]:{p.port}"
                lines.append(f"{host} {' '.join(p.host_pub.split()[:2])}")
        self.known_hosts.write_text("\n".join(lines) + "\n")

    def _write_ssh_config(self) -> None:
        """An ssh_config with an alias per pool, as a user would write it (`b-jump` uses ProxyJump)."""
        blocks = []
        for p in self.pools.values():
            blocks.append(f"Host pool-{p.name}\n  HostName {p.addr}\n  Port {p.port}\n  User root\n"
                          f"  IdentityFile {self.client_key}\n  UserKnownHostsFile {self.known_hosts}\n")
        if "b" in self.pools:
            b = self.pools["b"]
            blocks.append(f"Host b-jump\n  HostName {b.inner_addr}\n  Port {b.port}\n  User root\n"
                          f"  ProxyJump pool-a\n  IdentityFile {self.client_key}\n"
                          f"  UserKnownHostsFile {self.known_hosts}\n")
        self.ssh_config.write_text("\n".join(blocks))

    # -- helpers for tests --------------------------------------------------------------
    def pool_kwargs(self, pool: str, **over: object) -> dict[str, object]:
        """Fields of a PoolConfig for pool `pool` (explicit, not through the ssh_config)."""
        p = self.pools[pool]
        kw: dict[str, object] = dict(
            name=pool, transport="ssh", host=p.addr, port=p.port, user="root",
            identity_file=str(self.client_key), known_hosts=str(self.known_hosts),
            ssh_config=str(self.ssh_config), agent_command=AGENT, state_dir=str(p.state_dir),
            connect_timeout_s=5.0, keepalive_interval_s=2.0,
        )
        kw.update(over)
        return kw

    def unreachable_addr(self) -> tuple[str, int]:
        """An address of ours where nothing answers: a free host on pool a's veth subnet (or a closed loopback port)."""
        a = self.pools["a"]
        if a.netns:
            return a.addr.rsplit(".", 1)[0] + ".99", 22
        return "127.0.0.9", _free_port("127.0.0.9")

    def listening(self, pool: str) -> set[tuple[str, int]]:
        """(address, port) of every TCP socket listening inside the pool's network namespace."""
        out = subprocess.run(self.exec_in(pool, ["ss", "-ltnH"]), capture_output=True, text=True, timeout=30).stdout
        return {(addr, int(port)) for addr, port in (line.split()[3].rsplit(":", 1) for line in out.splitlines()
                                                    if line.strip())}

    def host_link_bytes(self, pool: str) -> int:
        """Bytes both ways on the link between this machine (the control plane) and the pool: its host veth."""
        p = self.pools[pool]
        assert p.netns, "only with network namespaces"
        stats = Path(f"/sys/class/net/lh{int(p.netns.split('-')[1]) % 100000}{pool}/statistics")
        return int((stats / "rx_bytes").read_text()) + int((stats / "tx_bytes").read_text())

    def set_link(self, pool: str, up: bool) -> None:
        """Pull (or put back) the pool's network cable: its side of the host veth, nothing sent back."""
        p = self.pools[pool]
        assert p.netns, "only with network namespaces"
        dev = f"ln{int(p.netns.split('-')[1]) % 100000}{pool}"
        _sh("ip", "-n", p.netns, "link", "set", dev, "up" if up else "down")

    def exec_in(self, pool: str, argv: list[str]) -> list[str]:
        p = self.pools[pool]
        return ["ip", "netns", "exec", p.netns, *argv] if p.netns else argv

    # -- teardown -----------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for p in self.pools.values():
            if not p.netns:  # loopback fallback: workers are ours only through the agent
                subprocess.run([AGENT, "--state-dir", str(p.state_dir), "worker", "stop", "--all"],
                               capture_output=True, timeout=60)
            if p.proc and p.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.proc.wait(5)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.proc.pid, signal.SIGKILL)
        for ns in self._netns:
            _kill_namespace(ns)
        for hv in self._host_veths:  # normally gone with the namespace
            subprocess.run(["ip", "link", "del", hv], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "SshdEnv":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
