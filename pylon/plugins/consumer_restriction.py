"""consumer-restriction: allow or deny by consumer, consumer group, service or route (APISIX).

Route / service / consumer configuration: ``type`` (``consumer_name`` (default),
``consumer_group_id``, ``service_id``, ``route_id``), ``whitelist``, ``blacklist``,
``allowed_by_methods`` (``[{user, methods}]``), ``rejected_code`` (403), ``rejected_msg``.
At least one of the three lists is required.

Runs in the access phase, after the authentication plugins (rewrite phase) have named the
consumer.  No value to check (no consumer, no group, a route without a service) is a 401
``The request is rejected, please check the <type> for this request``; a rejection is
``rejected_code`` with ``{"message": "The <type> is forbidden."}`` or ``rejected_msg``.
The blacklist wins over the whitelist; a whitelisted value skips ``allowed_by_methods``.
"""

from __future__ import annotations

from typing import Any

from pylon import pdk

name = "consumer-restriction"
priority = 2400
version = 0.1

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
           "PURGE"]

_LIST = {"type": "array", "minItems": 1, "items": {"type": "string"}}

schema = {
    "type": "object",
    "properties": {
        "type": {"type": "string",
                 "enum": ["consumer_name", "service_id", "route_id", "consumer_group_id"],
                 "default": "consumer_name"},
        "blacklist": _LIST,
        "whitelist": _LIST,
        "allowed_by_methods": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "user": {"type": "string"},
                    "methods": {"type": "array", "minItems": 1,
                                "items": {"type": "string", "enum": METHODS}},
                },
            },
        },
        "rejected_code": {"type": "integer", "minimum": 200, "default": 403},
        "rejected_msg": {"type": "string"},
    },
    "anyOf": [
        {"required": ["blacklist"]},
        {"required": ["whitelist"]},
        {"required": ["allowed_by_methods"]},
    ],
}


def _consumer_name(ctx: pdk.Context) -> str | None:
    return ctx.consumer_name


def _consumer_group_id(ctx: pdk.Context) -> str | None:
    cons = ctx.consumer
    return cons.group_id if cons is not None else None


def _service_id(ctx: pdk.Context) -> str | None:
    return ctx.service_id


def _route_id(ctx: pdk.Context) -> str | None:
    return ctx.route_id


_FETCH = {"consumer_name": _consumer_name, "consumer_group_id": _consumer_group_id,
          "service_id": _service_id, "route_id": _route_id}


class Prepared:
    __slots__ = ("black", "fetch", "methods", "missing", "reject", "white")

    def __init__(self, conf: dict[str, Any]) -> None:
        kind = conf["type"]
        self.fetch = _FETCH[kind]
        self.black = frozenset(conf.get("blacklist") or ())
        self.white = frozenset(conf.get("whitelist") or ())
        # user -> allowed methods; the first entry naming a user decides (as APISIX)
        methods: dict[str, frozenset[str]] = {}
        for item in conf.get("allowed_by_methods") or ():
            user = item.get("user")
            if user is not None and user not in methods:
                methods[user] = frozenset(item.get("methods") or ())
        self.methods = methods
        self.missing = (401, {"message": "The request is rejected, please check the "
                                         f"{kind} for this request"})
        msg = conf.get("rejected_msg")
        self.reject = (conf["rejected_code"],
                       {"message": msg if msg is not None else f"The {kind} is forbidden."})


def prepare(conf: dict[str, Any]) -> Prepared:
    return Prepared(conf)


def access(conf: Prepared, ctx: pdk.Context) -> Any:
    value = conf.fetch(ctx)
    if value is None:
        return conf.missing
    if value in conf.black:
        return conf.reject
    whitelisted = False
    block = False
    if conf.white:
        whitelisted = value in conf.white
        block = not whitelisted
    if conf.methods and not whitelisted:
        allowed = conf.methods.get(value)
        if allowed is not None and ctx.method not in allowed:
            block = True
    if block:
        return conf.reject
    return None
