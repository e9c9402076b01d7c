"""What a plugin may ask of the node it runs in: ``pdk.node()``.

The node (``pylon.node.Node``: settings, plugin registry, keyring, stores) is built once at
start and passed explicitly to everything in the core.  Plugin code is the one exception: a
plugin's ``check``/``prepare``/hooks have no node argument (their signatures are APISIX's), so
the process's node installs itself here once (``install``) and plugins read it through
``pdk.node()`` -- the single, deliberate process-wide handle (like Kong's ``kong`` global or
APISIX's ``core.config``).  Nothing outside ``pylon.pdk`` reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol


class PluginInfo(Protocol):
    """Another loaded plugin, as a plugin that composes others (multi-auth) sees it
    (read-only)."""

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def priority(self) -> int: ...

    @property
    def hooks(self) -> Mapping[str, Callable[..., Any]]: ...

    @property
    def prepare(self) -> Callable[[dict[str, Any]], Any] | None: ...

    def check_conf(self, conf: Any, schema_type: str = "route") -> dict[str, Any]: ...


class ApiEndpoint(Protocol):
    """One endpoint a plugin's ``api()`` exposes (public-api serves them on a route)."""

    @property
    def plugin(self) -> str: ...

    @property
    def uri(self) -> str: ...

    @property
    def handler(self) -> Callable[[Any], Any]: ...


class NodeServices(Protocol):
    def plugin_attr(self, name: str) -> dict[str, Any]:
        """The node config's ``plugin_attr.<name>`` (``{}`` when it has none)."""
        ...

    def setting(self, name: str) -> Any:
        """A resolved node setting (``pylon.settings.Settings.<name>``), None if unknown."""
        ...

    def plugin(self, name: str) -> PluginInfo | None:
        """A loaded plugin by name."""
        ...

    def api_match(self, method: str, path: str) -> ApiEndpoint | None:
        """The plugin endpoint (``api()``) serving ``method path``, if any."""
        ...

    async def ask_master(self, what: str, timeout: float = 5.0) -> Any:
        """Ask this node's master process (``"scrape"``: the node's metrics text); None
        when there is no master to ask (a single process, the master itself, a timeout)."""
        ...


class _Detached:
    """The node a process without one sees (unit tests of a plugin, tools)."""

    def plugin_attr(self, name: str) -> dict[str, Any]:
        return {}

    def setting(self, name: str) -> Any:
        return None

    def plugin(self, name: str) -> PluginInfo | None:
        return None

    def api_match(self, method: str, path: str) -> ApiEndpoint | None:
        return None

    async def ask_master(self, what: str, timeout: float = 5.0) -> Any:
        return None


DETACHED: NodeServices = _Detached()
_node: NodeServices = DETACHED


def node() -> NodeServices:
    """The node this process runs (``DETACHED`` before one is installed)."""
    return _node


def install(n: NodeServices) -> NodeServices:
    """Make ``n`` the node plugins see; returns the previous one (tests restore it)."""
    global _node
    old, _node = _node, n
    return old
