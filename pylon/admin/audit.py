"""The audit log of Admin API writes: one JSON line per committed change.

Each line names who wrote (the admin key's ``name``), from where, the method and path, the
store revision, and every key the request changed with its value before and after.  Secret
material is never written, neither in plain text nor encrypted: what each plugin declares
secret (its ``encrypt_fields``) and the resources' own secrets (SSL private keys, ...: see
``pylon.config.encryption.RESOURCE_SECRET_FIELDS``) read ``"******"``, so the audit log can be
shipped like any other log.  ``mask_secrets`` is also what a viewer key reads.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import msgspec

from ..config.encryption import RESOURCE_SECRET_FIELDS
from ..proxy.registry import Registry, map_fields

log = logging.getLogger("pylon.admin")

MASK = "******"


def _mask(value: Any) -> str:
    return MASK


def mask_secrets(kind: str, value: Any, registry: Registry) -> Any:
    """A copy of ``value``, a stored object of resource ``kind``, with every secret it holds
    replaced by ``MASK``: the fields its plugins declare (the whole configuration of a
    plugin the node's ``registry`` does not know), and the resource's own
    (``RESOURCE_SECRET_FIELDS``)."""
    value = registry.map_secrets(kind, value, _mask, _mask)
    own = RESOURCE_SECRET_FIELDS.get(kind)
    return map_fields(value, own, _mask) if own and isinstance(value, dict) else value


class AuditLog:
    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def record(self, who: str | None, client: str | None, method: str, path: str,
               revision: int, changes: list[tuple[str, Any, Any]], registry: Registry
               ) -> None:
        """Append one line; ``registry`` (the node's plugins) names the secrets to mask."""
        line = msgspec.json.encode({
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "key_name": who, "client": client,
            "method": method, "path": path, "revision": revision,
            "changes": [{"key": f"/apisix/{k}",
                         "before": mask_secrets(k.split("/", 1)[0], b, registry),
                         "after": mask_secrets(k.split("/", 1)[0], a, registry)}
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
