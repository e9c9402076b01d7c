"""traffic-split: send a share of the traffic, or the requests that match, to other upstreams
(APISIX): canary releases, blue-green, A/B tests.

``rules``: a list of ``{match, weighted_upstreams}``.  The first rule whose ``match`` passes
(any of its ``vars`` expressions; no ``match`` = every request) picks one of its
``weighted_upstreams`` by smooth weighted round robin: ``{upstream_id, weight}``, an inline
``{upstream: {...}, weight}``, or ``{weight}`` alone for the route's own upstream.  No rule
matching: the route's own upstream.

Inline upstreams become real upstreams of the snapshot (declared by ``upstreams(conf)``
below, compiled with keep-alive pools, balancers and health like any other; identical ones
are shared) -- not per-request objects.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from pylon import pdk

name = "traffic-split"
priority = 966
version = 0.1

_UPSTREAM = {"type": "object", "description": "an inline upstream (APISIX's upstream schema)"}
schema = {
    "type": "object",
    "properties": {
        "rules": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "match": {"type": "array", "items": {"type": "object", "properties": {
                        "vars": {"type": "array"}}}},
                    "weighted_upstreams": {
                        "type": "array", "minItems": 1,
                        "items": {"type": "object", "properties": {
                            "upstream_id": {"anyOf": [{"type": "string", "minLength": 1},
                                                      {"type": "integer"}]},
                            "upstream": _UPSTREAM,
                            "weight": {"type": "integer", "minimum": 0, "default": 1}}},
                    },
                },
                "required": ["weighted_upstreams"],
            },
        },
    },
}


def _key(raw: dict[str, Any]) -> str:
    return "plugin-upstreams/" + hashlib.blake2b(msgspec.json.encode(raw, order="sorted"),
                                                 digest_size=8).hexdigest()


def check(conf: dict[str, Any], schema_type: str) -> None:
    for i, rule in enumerate(conf.get("rules") or ()):
        for m in rule.get("match") or ():
            if m.get("vars"):
                pdk.compile_expr(m["vars"], f"rules[{i}].match.vars")
        for j, wu in enumerate(rule["weighted_upstreams"]):
            if "upstream" in wu:
                if "upstream_id" in wu:
                    raise ValueError("set upstream or upstream_id, not both")
                pdk.check_upstream(wu["upstream"],
                                   f"rules[{i}].weighted_upstreams[{j}].upstream")


def upstreams(conf: dict[str, Any]) -> dict[str, Any]:
    """The inline upstreams this configuration needs compiled (key -> raw upstream)."""
    out = {}
    for rule in conf.get("rules") or ():
        for wu in rule["weighted_upstreams"]:
            if "upstream" in wu:
                out[_key(wu["upstream"])] = wu["upstream"]
    return out


class _Picker:
    """Smooth weighted round robin over upstream keys (None: the route's own upstream)."""

    __slots__ = ("current", "keys", "total", "weights")

    def __init__(self, pairs: list[tuple[str | None, int]]) -> None:
        pairs = [(k, w) for k, w in pairs if w > 0]
        self.keys = [k for k, _ in pairs]
        self.weights = [w for _, w in pairs]
        self.current = [0] * len(pairs)
        self.total = sum(self.weights)

    def pick(self) -> str | None:
        n = len(self.keys)
        if n == 1:
            return self.keys[0]
        cur = self.current
        best = 0
        for i in range(n):
            cur[i] += self.weights[i]
            if cur[i] > cur[best]:
                best = i
        cur[best] -= self.total
        return self.keys[best]


class _Rule:
    __slots__ = ("match", "picker")

    def __init__(self, rule: dict[str, Any]) -> None:
        preds = [pdk.compile_expr(m["vars"], "match.vars") for m in rule.get("match") or ()
                 if m.get("vars")]
        self.match = preds or None
        pairs: list[tuple[str | None, int]] = []
        for wu in rule["weighted_upstreams"]:
            if "upstream" in wu:
                key: str | None = _key(wu["upstream"])
            elif wu.get("upstream_id") is not None:
                key = f"upstreams/{wu['upstream_id']}"
            else:
                key = None
            pairs.append((key, wu["weight"]))
        self.picker = _Picker(pairs) if any(w > 0 for _, w in pairs) else None


def prepare(conf: dict[str, Any]) -> tuple[_Rule, ...]:
    return tuple(_Rule(r) for r in conf.get("rules") or ())


def access(rules: tuple[_Rule, ...], ctx: pdk.Context) -> None:
    for rule in rules:
        if rule.match is not None and not any(p(ctx) for p in rule.match):
            continue
        if rule.picker is not None:
            key = rule.picker.pick()
            if key is not None:
                ctx.upstream_key = key
        return
