"""The APISIX-compatible Admin API (v3), served by the master process.

Wiring (``Master.start_admin``, on the master's loop): ``AdminApp(hub, keys, allow,
key_required, audit_path, explain, keyring, router_kind)`` reads the node's ``ConfigHub``
state and commits writes through it (``config/hub.py``), whatever the store (file or etcd);
``start_admin(loop, app, ip, port)`` serves it on ``deployment.admin.admin_listen``.
"""

from ..config.persist import write_doc_atomically
from .app import AdminApp
from .auth import AdminKey, parse_allow, parse_keys
from .server import start_admin

__all__ = ["AdminApp", "AdminKey", "parse_allow", "parse_keys", "start_admin",
           "write_doc_atomically"]
