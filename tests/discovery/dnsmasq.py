"""A throw-away dnsmasq on 127.0.0.1 (Debian's dnsmasq-base) serving the records a test
writes: A/AAAA from a hosts file (``set_hosts``: re-read on SIGHUP), SRV from the config
(``set_srv``: dnsmasq reads those only at start, so the server is restarted on the same
port).  ``local=/test/``: names under ``.test`` that have no record answer NXDOMAIN."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Self

from tests.server_process import ServerProcess, free_port


def find_dnsmasq() -> str | None:
    return shutil.which("dnsmasq") or next(
        (p for p in ("/usr/sbin/dnsmasq", "/sbin/dnsmasq") if os.access(p, os.X_OK)), None)


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Dnsmasq(ServerProcess):
    def __init__(self, ttl: int = 1) -> None:
        binary = find_dnsmasq()
        if binary is None:
            raise RuntimeError("dnsmasq not installed (Debian package dnsmasq-base)")
        self.binary = binary
        self.tmp = tempfile.mkdtemp(prefix="pylon-dnsmasq-")
        os.chmod(self.tmp, 0o755)    # dnsmasq drops root for its own user: it must read here
        self.log_path = os.path.join(self.tmp, "dnsmasq.log")
        self.hosts_path = os.path.join(self.tmp, "hosts")
        self.conf_path = os.path.join(self.tmp, "dnsmasq.conf")
        self.ttl = ttl
        self.srv: list[str] = []
        self.port = 0
        for _ in range(50):
            port = free_port()
            if _udp_free(port):
                self.port = port
                break
        self.set_hosts({}, reload=False)

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_conf(self) -> None:
        lines = [f"port={self.port}", "listen-address=127.0.0.1", "bind-interfaces",
                 "no-resolv", "no-hosts", f"addn-hosts={self.hosts_path}", "local=/test/",
                 f"local-ttl={self.ttl}", f"pid-file={os.path.join(self.tmp, 'pid')}",
                 f"log-facility={self.log_path}", "log-queries",
                 *(f"srv-host={s}" for s in self.srv)]
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def set_hosts(self, records: dict[str, list[str]], reload: bool = True) -> None:
        """``{name: [address, ...]}`` as the A/AAAA records (SIGHUP makes dnsmasq re-read)."""
        with open(self.hosts_path + ".tmp", "w") as f:
            for name, addrs in records.items():
                for a in addrs:
                    f.write(f"{a} {name}\n")
        os.chmod(self.hosts_path + ".tmp", 0o644)
        os.replace(self.hosts_path + ".tmp", self.hosts_path)
        if reload and self.proc is not None:
            self.proc.send_signal(signal.SIGHUP)
            time.sleep(0.2)

    def set_srv(self, records: list[tuple[str, str, int, int, int]]) -> None:
        """``[(name, target, port, priority, weight)]``; restarts dnsmasq (same port)."""
        self.srv = [f"{n},{t},{p},{prio},{w}" for n, t, p, prio, w in records]
        if self.proc is not None:
            self.stop()
            self.start()

    def start(self) -> Self:
        self._write_conf()
        self.proc = subprocess.Popen([self.binary, "-C", self.conf_path, "-k"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"dnsmasq exited: {err}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("dnsmasq did not start")
