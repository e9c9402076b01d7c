"""The APISIX-compatible Admin API (v3), served by the master process.

Wiring (in ``Master``, on its asyncio loop, only when ``deployment.admin`` is set and the
config provider is ``yaml``; the master is the file store's single writer):

* settings: ``deployment.admin.admin_listen`` ``{ip, port}`` (default 127.0.0.1:9180),
  ``admin_key`` rows ``{name, key, role: admin|viewer}`` → ``auth.parse_keys``,
  ``allow_admin`` CIDRs → ``auth.parse_allow`` (None → APISIX default 127.0.0.0/24),
  ``admin_key_required`` (default true) → ``AdminApp(key_required=...)``;
* ``app = AdminApp(lambda: self.doc, persist, keys, allow)`` where ``persist(new_doc)`` is
  ``persist.write_doc_atomically(self.store.path, new_doc)`` followed by
  ``self.read_config(False)`` and ``self.broadcast()`` (or let the file watch pick it up);
* ``self.admin_server = await start_admin(self.loop, app, ip, port)``; close it on stop.
"""

from .app import AdminApp
from .auth import AdminKey, parse_allow, parse_keys
from .persist import write_doc_atomically
from .server import start_admin

__all__ = ["AdminApp", "AdminKey", "parse_allow", "parse_keys", "start_admin",
           "write_doc_atomically"]
