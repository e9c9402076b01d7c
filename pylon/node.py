"""The node: what one running Pylon is made of, built once at start and passed in.

``Node.load(path, prefix)`` reads the node config (``conf/config.yaml``), loads the plugins it
names (the plugin ``Registry``) and opens the keyring that encrypts secrets at rest.  The master
and every worker build their own ``Node`` (a worker from the same file) and hand it to what
needs it: the config compiler (plugins, keyring), the Admin API, the Control API.  Nothing in
the core reads process globals for these.  The one deliberate exception is plugin code, which
reaches its node through ``pylon.pdk.node()`` (installed with ``Node.install``): see
``pylon/pdk/node.py``.

A plugin reload (``pylon reload`` / ``PUT /apisix/admin/plugins/reload``) swaps
``node.plugins`` for a new registry; holders of the node see the new one at their next read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .proxy.registry import Registry

if TYPE_CHECKING:
    from .config.encryption import Keyring
    from .pdk.node import ApiEndpoint, PluginInfo
    from .settings import Settings


class Node:
    def __init__(self, settings: Settings | None = None, plugins: Registry | None = None,
                 keyring: Keyring | None = None, warnings: list[str] | None = None) -> None:
        self.settings = settings
        self.plugins = plugins if plugins is not None else Registry()
        self.keyring = keyring
        #: what loading the node config and the plugins had to say (printed by the CLI)
        self.warnings: list[str] = list(warnings or ())

    # -- pdk.node(): what plugins may ask (pylon.pdk.node.NodeServices) --------------------
    def plugin_attr(self, name: str) -> dict[str, Any]:
        return self.plugins.attrs.get(name) or {}

    def setting(self, name: str) -> Any:
        return getattr(self.settings, name, None) if self.settings is not None else None

    def plugin(self, name: str) -> PluginInfo | None:
        return self.plugins.get(name)

    def api_match(self, method: str, path: str) -> ApiEndpoint | None:
        return self.plugins.api_match(method, path)

    async def ask_master(self, what: str, timeout: float = 5.0) -> Any:
        return None
