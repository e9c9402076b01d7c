"""The audit log of Admin API writes: one JSON line per committed change.

Each line names who wrote (the admin key's ``name``), from where, the method and path, the
store revision, and every key the request changed with its value before and after.  Secret
material is never written: private keys of ssls and credential fields (``key``,
``password``, ``secret``, ``private_key`` ...) are masked, so the audit log can be shipped
like any other log.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import msgspec

log = logging.getLogger("pylon.admin")

#: field names whose values are never logged (APISIX's encrypted fields and the like)
SECRET_FIELDS = frozenset({"key", "keys", "password", "secret", "private_key", "client_secret",
                           "secret_key", "access_key", "token", "api_key"})
MASK = "******"


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (MASK if k in SECRET_FIELDS and isinstance(v, (str, list)) else redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


class AuditLog:
    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def record(self, who: str | None, client: str | None, method: str, path: str,
               revision: int, changes: list[tuple[str, Any, Any]]) -> None:
        line = msgspec.json.encode({
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "key_name": who, "client": client,
            "method": method, "path": path, "revision": revision,
            "changes": [{"key": f"/apisix/{k}", "before": redact(b), "after": redact(a)}
                        for k, b, a in changes]}) + b"\n"
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as e:   # the write itself is done; say loudly that it went unrecorded
            log.error("admin audit log %s: %s; unrecorded: %s", self.path, e,
                      line.decode().strip())
