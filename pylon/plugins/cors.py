"""cors: Cross-Origin Resource Sharing headers, as APISIX's ``cors`` plugin.

Route: ``allow_origins`` (``"*"``; a comma list; ``"**"`` echoes any Origin), ``allow_methods``
(``"*"``; ``"**"`` lists every method), ``allow_headers`` (``"*"``; ``"**"`` echoes
``Access-Control-Request-Headers``), ``expose_headers`` (unset: no header), ``max_age`` (5),
``allow_credential`` (false; refused with any ``"*"``), ``allow_origins_by_regex`` (PCRE list;
when set, ``allow_origins`` is ignored), ``allow_origins_by_metadata`` (keys into the
plugin_metadata ``allow_origins`` map), ``timing_allow_origins`` (+ ``_by_regex``) for
``Timing-Allow-Origin``.

As APISIX: every ``OPTIONS`` request is answered 200 by the gateway in ``rewrite`` (never
proxied); the headers are set in ``header_filter``, so they replace the upstream's own CORS
headers and are also on any reply a later plugin makes (an auth plugin's 401).  The Origin
used is the one the request arrived with (saved in ``rewrite``), whatever later plugins do to
the request headers.
"""

from __future__ import annotations

import re
from typing import Any

from pylon import pdk
from pylon.pdk.match import compile_pcre

name = "cors"
priority = 4000
version = 0.1

_ORIGINS_PATTERN = r"^(\*|\*\*|null|\w+://[^,]+(,\w+://[^,]+)*)$"
_REGEX_LIST = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 4096},
               "minItems": 1, "uniqueItems": True}

schema = {
    "type": "object",
    "properties": {
        "allow_origins": {"type": "string", "pattern": _ORIGINS_PATTERN, "default": "*"},
        "allow_methods": {"type": "string", "default": "*"},
        "allow_headers": {"type": "string", "default": "*"},
        "expose_headers": {"type": "string"},
        "max_age": {"type": "integer", "default": 5},
        "allow_credential": {"type": "boolean", "default": False},
        "allow_origins_by_regex": _REGEX_LIST,
        "allow_origins_by_metadata": _REGEX_LIST,
        "timing_allow_origins": {"type": "string", "pattern": _ORIGINS_PATTERN},
        "timing_allow_origins_by_regex": _REGEX_LIST,
    },
}
metadata_schema = {
    "type": "object",
    "properties": {
        "allow_origins": {"type": "object",
                          "additionalProperties": {"type": "string",
                                                   "pattern": _ORIGINS_PATTERN}},
    },
}

ALL_METHODS = "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE"
_STORE_KEY = "cors.origin"


def check(conf: dict[str, Any], schema_type: str) -> None:
    if schema_type == "metadata":
        return
    if conf["allow_credential"] and "*" in (
            conf["allow_origins"], conf["allow_methods"], conf["allow_headers"],
            conf.get("expose_headers"), conf.get("timing_allow_origins")):
        raise ValueError("you can not set '*' for other option when 'allow_credential' is true")
    for key in ("allow_origins_by_regex", "timing_allow_origins_by_regex"):
        for rule in conf.get(key) or ():
            try:
                compile_pcre(rule)
            except re.error as e:
                raise ValueError(f"{key}: invalid regex {rule!r}: {e}") from None


class _Origins:
    """One ``allow_origins``-style value: ``*``, ``**``, one origin or a comma list."""

    __slots__ = ("many", "value")

    def __init__(self, value: str) -> None:
        self.value = value
        self.many = frozenset(value.split(",")) - {""} if "," in value else None

    def resolve(self, origin: str | None) -> str | None:
        """APISIX's process_with_allow_origins: the value for the header, or None."""
        value = self.value
        if value == "**":
            return origin or "*"
        if self.many is not None:
            return origin if origin in self.many else None
        return value


def _matches(origin: str | None, allowed: str | None) -> bool:
    return allowed == "*" or (allowed is not None and allowed == origin)


def _regex(rules: list[str] | None) -> re.Pattern[str] | None:
    if not rules:
        return None
    return compile_pcre("|".join(rules))


class Conf:
    __slots__ = (
        "allow_headers",
        "by_metadata",
        "by_regex",
        "echo_headers",
        "origins",
        "static",
        "timing",
        "timing_regex",
        "vary",
    )

    def __init__(self, conf: dict[str, Any]) -> None:
        self.origins = _Origins(conf["allow_origins"])
        self.by_regex = _regex(conf.get("allow_origins_by_regex"))
        self.by_metadata: list[str] | None = conf.get("allow_origins_by_metadata")
        self.vary = conf["allow_origins"] != "*"
        t = conf.get("timing_allow_origins")
        self.timing = _Origins(t) if t is not None else None
        self.timing_regex = _regex(conf.get("timing_allow_origins_by_regex"))
        methods = conf["allow_methods"]
        static = [("Access-Control-Allow-Methods", ALL_METHODS if methods == "**" else methods),
                  ("Access-Control-Max-Age", str(conf["max_age"]))]
        expose = conf.get("expose_headers")
        if expose:
            static.append(("Access-Control-Expose-Headers", expose))
        self.echo_headers = conf["allow_headers"] == "**"
        self.allow_headers = conf["allow_headers"]
        if conf["allow_credential"]:
            static.append(("Access-Control-Allow-Credentials", "true"))
        self.static = tuple(static)


def prepare(conf: dict[str, Any]) -> Conf:
    return Conf(conf)


def prepare_metadata(conf: dict[str, Any]) -> dict[str, _Origins]:
    return {k: _Origins(v) for k, v in (conf.get("allow_origins") or {}).items()}


def rewrite(conf: Conf, ctx: pdk.Context) -> Any:
    ctx.store[_STORE_KEY] = ctx.header("Origin")
    if ctx.method == "OPTIONS":
        return 200
    return None


def _by_regex(rx: re.Pattern[str], origin: str | None) -> str | None:
    return origin if origin is not None and rx.search(origin) else None


def _by_metadata(conf: Conf, ctx: pdk.Context, origin: str | None) -> str | None:
    keys = conf.by_metadata
    if not keys:
        return None
    meta = ctx.metadata(name)
    if not meta:
        return None
    for key in keys:
        o = meta.get(key)
        if o is not None and _matches(origin, o.resolve(origin)):
            return origin
    return None


def header_filter(conf: Conf, ctx: pdk.Context) -> None:
    store = ctx.store
    origin = store[_STORE_KEY] if _STORE_KEY in store else ctx.header("Origin")
    allowed: str | None = None
    local = True
    if conf.by_metadata:
        allowed = _by_metadata(conf, ctx, origin)
        local = not _matches(origin, allowed) and conf.origins.value != "*"
    if local:
        allowed = conf.origins.resolve(origin) if conf.by_regex is None \
            else _by_regex(conf.by_regex, origin)
    if not _matches(origin, allowed):
        allowed = _by_metadata(conf, ctx, origin)
    if conf.vary:
        ctx.add_resp_header("Vary", "Origin")
    if allowed:
        ctx.set_resp_header("Access-Control-Allow-Origin", allowed)
        for k, v in conf.static:
            ctx.set_resp_header(k, v)
        ctx.set_resp_header("Access-Control-Allow-Headers",
                            ctx.header("Access-Control-Request-Headers")
                            if conf.echo_headers else conf.allow_headers)
    timing: str | None = None
    if conf.timing_regex is not None:
        timing = _by_regex(conf.timing_regex, origin)
    elif conf.timing is not None:
        timing = conf.timing.resolve(origin)
    if timing and _matches(origin, timing):
        ctx.set_resp_header("Timing-Allow-Origin", timing)
