"""Per-route plugin chains, compiled once per snapshot.

A ``Chain`` holds, for each phase, the tuple of ``Hook``s to run in order (highest priority
first).  Phases with no hooks cost nothing per request: the exchange checks one boolean.

Merging follows APISIX: a route's plugins override its ``plugin_config``'s, and both override
its service's (per plugin name, whole configuration); a consumer's plugins override the
route's, and the consumer group's are overridden by the consumer's.  Global rules are a
separate chain that runs before the route's in every phase.  ``ChainBuilder`` validates,
fills defaults and ``prepare``s each configuration once, and shares identical chains and
prepared configurations between routes (10k routes with ``key-auth: {}`` hold one chain).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from .registry import PHASES, STREAM_PHASES, Registry, map_fields

_enc = msgspec.json.Encoder(order="sorted")


class Hook:
    """One plugin's hook for one phase, with its prepared configuration."""

    __slots__ = ("conf", "error_response", "filter", "fn", "name", "phase", "plugin", "priority")

    def __init__(self, fn: Callable[..., Any], conf: Any, plugin: Any, phase: str,
                 priority: int, filter: Callable[[Any], bool] | None,
                 error_response: Any) -> None:
        self.fn = fn
        self.conf = conf
        self.plugin = plugin          # PluginSpec
        self.name = plugin.name
        self.phase = phase
        self.priority = priority
        self.filter = filter
        self.error_response = error_response

    def __repr__(self) -> str:
        return f"<Hook {self.name}.{self.phase} priority={self.priority}>"


class Chain:
    """Hooks per phase, in run order.  Hashes by identity (a consumer caches its merged
    chains by the route chain object)."""

    __slots__ = ("access", "before_proxy", "body_filter", "confs", "consumer_rewrite", "empty",
                 "header_filter", "log", "names", "request", "response", "rewrite",
                 "upstreams")

    def __init__(self, rewrite: tuple[Any, ...] = (), access: tuple[Any, ...] = (),
                 before_proxy: tuple[Any, ...] = (), header_filter: tuple[Any, ...] = (),
                 body_filter: tuple[Any, ...] = (), log: tuple[Any, ...] = (),
                 confs: Any = None, names: frozenset[str] = frozenset(),
                 consumer_rewrite: tuple[Any, ...] = (),
                 upstreams: dict[str, Any] | None = None) -> None:
        self.rewrite = rewrite
        self.access = access
        self.before_proxy = before_proxy
        self.header_filter = header_filter
        self.body_filter = body_filter
        self.log = log
        #: the merged configurations by plugin name (raw, as configured): consumer merging
        #: starts from these
        self.confs = confs
        self.names = names
        #: for a chain merged with a consumer: the rewrite hooks of the plugins the consumer
        #: brought (APISIX runs them after authentication, "rewrite_in_consumer")
        self.consumer_rewrite = consumer_rewrite
        #: upstreams the chain's plugins declare (``upstreams(conf)`` of a plugin module,
        #: e.g. traffic-split's inline ones): key -> raw upstream; the compiler gives each a
        #: runtime like any other upstream
        self.upstreams = upstreams or {}
        #: some hook runs before the request goes upstream
        self.request = bool(rewrite or access or before_proxy)
        #: some hook runs on the response (header_filter, body_filter, log)
        self.response = bool(header_filter or body_filter or log)
        self.empty = not (self.request or self.response)

    def __repr__(self) -> str:
        return f"<Chain {sorted(self.names)}>"


EMPTY = Chain(confs={})


def merge(*layers: dict[str, Any] | None) -> dict[str, Any]:
    """Plugin maps merged per plugin name, later layers winning (APISIX merge order:
    ``merge(service, plugin_config, route)``, ``merge(group, consumer)``)."""
    out: dict[str, Any] = {}
    for layer in layers:
        if layer:
            out.update(layer)
    return out


class Opener(Protocol):
    """What opens a secret stored encrypted (the node's ``Keyring``)."""

    def open(self, value: Any) -> Any: ...


class ChainBuilder:
    """Builds chains against one registry, caching what identical inputs share.

    ``keyring`` (the node's) opens the secret fields (``encrypt_fields``) of configurations
    stored encrypted; None: they are stored plain.  The caches live as long as the builder;
    the config model makes a new builder on a full load or a plugin reload (a registry
    change), so a cached entry never outlives the code it was compiled for."""

    def __init__(self, registry: Registry, keyring: Opener | None = None) -> None:
        self.registry = registry
        self.keyring = keyring
        self._entries: dict[bytes, tuple[Any, ...] | None] = {}
        self._chains: dict[bytes, Chain] = {}

    def build(self, plugins: dict[str, Any] | None) -> Chain:
        """The chain for a merged plugin map; raises PluginConfigError (its text is APISIX's
        error) when a configuration does not validate, ValueError for an unknown plugin."""
        if not plugins:
            return EMPTY
        key = _enc.encode(plugins)
        chain = self._chains.get(key)
        if chain is None:
            for n in plugins:               # a stream-only plugin (mqtt-proxy) is unknown here
                spec = self.registry.get(n)
                if spec is not None and not spec.serves("http"):
                    raise ValueError(f"unknown plugin [{n}]")
            entries = [e for e in (self._entry(n, c) for n, c in plugins.items())
                       if e is not None]
            chain = chain_of(entries, dict(plugins))
            if len(self._chains) > 50_000:
                self._chains.clear()
            self._chains[key] = chain
        return chain

    def _entry(self, name: str, conf: Any) -> tuple[Any, ...] | None:
        key = name.encode() + b"\0" + _enc.encode(conf)
        if key in self._entries:
            return self._entries[key]
        spec = self.registry.get(name)
        if spec is None:
            raise ValueError(f"unknown plugin [{name}]")
        if spec.encrypt_fields and isinstance(conf, dict) and self.keyring is not None:
            conf = map_fields(conf, spec.encrypt_fields, self.keyring.open)
        checked = spec.check_conf(conf, "route")
        meta = checked.pop("_meta", None) or {}
        entry: tuple[Any, ...] | None
        if meta.get("disable"):
            entry = None
        else:
            prepared = spec.prepare(checked) if spec.prepare is not None else checked
            prio = meta.get("priority")
            flt = None
            if meta.get("filter"):
                from ..routing.expr import compile_expr
                flt = compile_expr(meta["filter"], "_meta.filter")
            ups = getattr(spec.module, "upstreams", None)
            entry = (spec, prepared, spec.priority if prio is None else prio, flt,
                     meta.get("error_response"), ups(checked) if callable(ups) else None)
        if len(self._entries) > 50_000:
            self._entries.clear()
        self._entries[key] = entry
        return entry

    def build_stream(self, plugins: dict[str, Any] | None) -> StreamChain:
        """A stream route's plugins (docs/stream.md): validated, defaulted and prepared as
        a route's are (``_meta`` included); a loaded plugin without stream hooks is unknown
        here, as a plugin missing from APISIX's ``stream_plugins``."""
        if not plugins:
            return STREAM_EMPTY
        entries = []
        for name, conf in plugins.items():
            spec = self.registry.get(name)
            if spec is None or not spec.serves("stream"):
                raise ValueError(f"unknown plugin [{name}]")
            e = self._entry(name, conf)
            if e is not None:
                entries.append(e)
        entries.sort(key=lambda e: -e[2])
        phases: dict[str, tuple[Hook, ...]] = {
            ph: tuple(Hook(e[0].stream_hooks[ph], e[1], e[0], ph, e[2], e[3], e[4])
                      for e in entries if ph in e[0].stream_hooks)
            for ph in STREAM_PHASES}
        return StreamChain(phases["stream_preread"], phases["stream_log"])

    def merge_consumer(self, route_chain: Chain, plugins: dict[str, Any]) -> Chain:
        """``route_chain`` with a consumer's ``plugins`` merged in (the consumer's win); its
        ``consumer_rewrite`` holds the rewrite hooks the consumer brought."""
        merged = self.build(merge(route_chain.confs or {}, plugins))
        mine = frozenset(plugins)
        return Chain(merged.rewrite, merged.access, merged.before_proxy, merged.header_filter,
                     merged.body_filter, merged.log, merged.confs, merged.names,
                     tuple(h for h in merged.rewrite if h.name in mine), merged.upstreams)

    def prepare_consumer(self, name: str, conf: dict[str, Any]) -> Any:
        spec = self.registry.get(name)
        if spec is None:
            raise ValueError(f"unknown plugin [{name}]")
        checked = spec.check_conf(conf, "consumer" if spec.consumer_schema else "route")
        return spec.prepare_consumer(checked) if spec.prepare_consumer else checked


class StreamChain:
    """A stream route's hooks: ``preread`` when a connection (or UDP session) starts,
    ``log`` when it ends; highest priority first."""

    __slots__ = ("log", "preread")

    def __init__(self, preread: tuple[Hook, ...] = (), log: tuple[Hook, ...] = ()) -> None:
        self.preread = preread
        self.log = log


STREAM_EMPTY = StreamChain()


def chain_of(entries: list[tuple[Any, ...]], confs: dict[str, Any]) -> Chain:
    """Entries ``(spec, prepared conf, priority, filter, error_response, upstreams)`` →
    a Chain."""
    entries = sorted(entries, key=lambda e: -e[2])
    phases: dict[str, list[Hook]] = {ph: [] for ph in PHASES}
    upstreams: dict[str, Any] = {}
    for spec, prepared, prio, flt, err, ups in entries:
        wanted = spec.phases(prepared) if spec.phases is not None else None
        for ph, fn in spec.hooks.items():
            if wanted is None or ph in wanted:
                phases[ph].append(Hook(fn, prepared, spec, ph, prio, flt, err))
        if ups:
            upstreams.update(ups)
    return Chain(**{ph: tuple(hs) for ph, hs in phases.items()}, confs=confs,
                 names=frozenset(e[0].name for e in entries), upstreams=upstreams)


def concat(chains: list[Chain]) -> Chain:
    """Chains run one after the other (global rules, each rule with its own plugins)."""
    chains = [c for c in chains if not c.empty]
    if not chains:
        return EMPTY
    if len(chains) == 1:
        return chains[0]
    return Chain(**{ph: tuple(h for c in chains for h in getattr(c, ph)) for ph in PHASES},
                 confs={}, names=frozenset(n for c in chains for n in c.names),
                 upstreams={k: v for c in chains for k, v in c.upstreams.items()})
