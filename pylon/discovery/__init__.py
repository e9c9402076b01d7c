"""Service discovery: upstream nodes found in a registry (APISIX ``discovery_type``).

The registries are watched in the master, once per node (``manager.py``); the node lists
go to the workers over the control channel, which swap them into the upstream runtimes
(``pylon.upstream.runtime.Runtimes.set_discovered``).  One module per registry, a common
base (``base.py``: watch state, back-off, last known nodes).  See docs/discovery.md.

The types Pylon implements are ``pylon.model.upstream.DISCOVERY_TYPES`` (the model checks
``discovery_type`` against them; this package depends on the model, not the reverse).
"""


def watch_key(discovery_type: str, service_name: str,
              discovery_args: dict[str, object] | None) -> str:
    """What the master watches for an upstream, as one string (the same for every upstream
    that names the same service the same way): ``[type, service_name, args]`` in JSON."""
    import json
    return json.dumps([discovery_type, service_name, discovery_args or {}], sort_keys=True,
                      separators=(",", ":"))
