"""The lifecycle shared by the real servers the tests run (etcd, Redis): stop (SIGTERM, then
SIGKILL), kill (a crash), close (and remove the temp dir), context manager, log tail.  A
subclass sets ``proc``, ``tmp`` and ``log_path`` and implements ``start()``."""

from __future__ import annotations

import shutil
import signal
import subprocess
from types import TracebackType
from typing import Self

from pylon.pdk.testing import free_port

__all__ = ["ServerProcess", "free_port"]


class ServerProcess:
    proc: subprocess.Popen[bytes] | None = None
    tmp: str = ""
    log_path: str = ""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL.  Ports and data are kept for
        ``start()``."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL (a crash: no graceful shutdown)."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None

    def close(self) -> None:
        """Stop the server and remove its temp dir."""
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def log_tail(self, n: int = 2000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""
