"""Plugin registry: which plugins this node loads, by name.

The plugin system fills ``REGISTRY``; a route naming a plugin that is not loaded is rejected
with the plugin's name, as APISIX rejects unknown plugins.
"""

from __future__ import annotations

from typing import Any

REGISTRY: dict[str, Any] = {}


def check_plugins(plugins: dict[str, Any] | None, path: str) -> str | None:
    if not plugins:
        return None
    for name in plugins:
        if name not in REGISTRY:
            return f"{path}: unknown plugin {name!r}"
    return None


def plugin_table() -> dict[str, dict[str, Any]]:
    """The loaded plugins as the Admin API publishes them (``name -> {priority, schema}``)."""
    return {name: {"priority": getattr(p, "priority", 0),
                   "schema": getattr(p, "schema", {"type": "object"})}
            for name, p in REGISTRY.items()}
