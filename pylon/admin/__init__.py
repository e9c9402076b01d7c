"""The APISIX-compatible Admin API (v3), served by the master process.

Wiring (``Master.start_admin``, on the master's loop): ``AdminApp(hub, keys, allow,
key_required, audit_path, explain, *, node, router_kind, reload_plugins, viewer_secrets)``
reads the node's ``ConfigHub`` state and commits writes through it (``config/hub.py``),
whatever the store (file or etcd); the node (``pylon.node.Node``) gives the loaded plugins
and the keyring.  ``start_admin(loop, app, ip, port)`` serves it on
``deployment.admin.admin_listen``.

Modules: ``app`` (dispatch, batches, and ``answer``: the one mapping of errors to replies),
``resources`` (the resource operations), ``meta`` (schema, plugins, configs/validate,
openapi.json, explain), ``checks`` (what a write and a validation check, APISIX's order and
words), ``openapi``, ``auth``, ``audit``, ``server`` (the HTTP/1.1 transport), ``node_key``.
The kinds and their schemas are the resource catalogue in ``pylon.model`` (``kinds``,
``schemas``, ``apisix``).
"""

from ..config.persist import write_doc_atomically
from .app import AdminApp
from .auth import AdminKey, parse_allow, parse_keys
from .server import start_admin

__all__ = ["AdminApp", "AdminKey", "parse_allow", "parse_keys", "start_admin",
           "write_doc_atomically"]
