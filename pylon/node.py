"""The node: what one running Pylon is made of, built once at start and passed in.

``Node.load(path, prefix)`` reads the node config (``conf/config.yaml``), loads the plugins it
names (the plugin ``Registry``) and opens the keyring that encrypts secrets at rest.  The master
and every worker build their own ``Node`` (a worker from the same file) and hand it to what
needs it: the config compiler (plugins, keyring), the Admin API, the Control API.  Nothing in
the core reads process globals for these.  The one deliberate exception is plugin code, which
reaches its node through ``pylon.pdk.node()`` (the process installs its node there with
``pylon.pdk.runtime.install``): see ``pylon/pdk/runtime.py``.

A plugin reload (``pylon reload`` / ``PUT /apisix/admin/plugins/reload``) swaps
``node.plugins`` for a new registry; holders of the node see the new one at their next read.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from .config.encryption import Keyring, node_keyring
from .config.loader import read_file
from .proxy import registry
from .proxy.registry import Registry
from .settings import Settings, load_settings

if TYPE_CHECKING:
    from .pdk.runtime import ApiEndpoint, PluginInfo

log = logging.getLogger("pylon.node")


class MasterChannel(Protocol):
    """A worker's line to its master (``pylon.server.worker.MasterLink``)."""

    async def ask(self, t: str, timeout: float) -> Any: ...


def load_plugins(settings: Settings, *, reload: bool = False) -> Registry:
    """The plugins ``settings`` name (every one found when it names none), given their
    ``plugin_attr``; ``reload`` imports their code again (a plugin reload)."""
    reg = registry.load(settings.plugins, settings.plugin_dirs, reload=reload,
                        stream_names=settings.stream_plugins)
    registry.configure(reg, settings.plugin_attr)
    return reg


class Node:
    def __init__(self, settings: Settings | None = None, plugins: Registry | None = None,
                 keyring: Keyring | None = None, warnings: list[str] | None = None) -> None:
        self.settings = settings
        self.plugins = plugins if plugins is not None else Registry()
        self.keyring = keyring
        #: what loading the node config and the plugins had to say (printed by the CLI)
        self.warnings: list[str] = list(warnings or ())
        #: a worker's channel to its master (set by the worker); None elsewhere
        self.master: MasterChannel | None = None

    @classmethod
    def load(cls, path: str, prefix: str, *, plugins: bool = True) -> Node:
        """The node the config file ``path`` describes (``ConfigError`` when it is invalid).
        With ``plugins`` it loads the plugins the config names and opens the keyring
        (``apisix.data_encryption``); without, only the settings (a command that signals or
        calls a running node)."""
        settings, warnings = load_settings(read_file(path), prefix, path)
        if not plugins:
            return cls(settings, warnings=warnings)
        reg = load_plugins(settings)
        keyring = node_keyring(settings.keyring, settings.prefix) \
            if settings.encrypt_fields else None
        return cls(settings, reg, keyring, [*warnings, *reg.errors])

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
        master = self.master
        if master is None:
            return None
        try:
            return await master.ask(what, timeout)
        except (TimeoutError, ConnectionError) as e:
            log.warning("asked the master %r: no answer (%s)", what, str(e) or type(e).__name__)
            return None
