"""Error-log setup shared by the master and the workers (nginx-like line format)."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO,
          "warn": logging.WARNING, "error": logging.ERROR, "crit": logging.CRITICAL,
          "alert": logging.CRITICAL, "emerg": logging.CRITICAL}


def setup_logging(settings: Any, role: str) -> None:
    fmt = logging.Formatter(
        f"%(asctime)s [%(levelname)s] {os.getpid()}#{role}: %(message)s", "%Y/%m/%d %H:%M:%S")
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()                     # reload / SIGUSR1: do not leak the old log file's fd
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    path = getattr(settings, "error_log", None)
    if path:
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            handlers.append(logging.FileHandler(path))
        except OSError as e:
            print(f"pylon: cannot open error log {path}: {e}", file=sys.stderr)
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(LEVELS.get(getattr(settings, "error_log_level", "warn"), logging.WARNING))
    # what operators need to see at the default level: config applied / rejected
    logging.getLogger("pylon.config").setLevel(min(root.level, logging.INFO))
