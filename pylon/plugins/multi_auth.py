"""multi-auth: several authentication plugins, the first that accepts the request wins
(APISIX ``multi-auth``).

::

    multi-auth:
      auth_plugins:
        - basic-auth: {}
        - key-auth: {query: k}
        - jwt-auth: {}

Each entry names a loaded authentication plugin (``type = "auth"``) and its route
configuration.  They are checked with that plugin's own schema and ``check`` (APISIX's error
texts: ``<name> plugin did not found``, ``<name> plugin is not supported``, ``multi-auth plugin
failed to check the configuration of plugin <name> err: ...``) and prepared once per config
snapshot with that plugin's ``prepare``.  At request time their ``rewrite`` hooks run in
order; the first that lets the request through has authenticated it.  When all refuse, the
answer is 401 ``{"message": "Authorization Failed"}`` and each plugin's reason is logged
(``<name> failed to authenticate the request, code: 401. error: <message>``); the
``WWW-Authenticate`` challenges of the refusals are sent with it (APISIX leaves the last one
set).

A refusing plugin leaves nothing behind: response headers it set with ``ctx.set_resp_header``
are dropped before the next one runs.  (The built-in auth plugins change the request only once
they accept it.)

Cost: the hook is synchronous; it only becomes a coroutine -- one task -- when a sub-plugin's
hook returns an awaitable (e.g. hmac-auth checking the body), from that plugin on.

The sub-plugins are looked up among the node's plugins when the configuration is prepared
(``pylon.pdk.node().plugin(name)``).
"""

from __future__ import annotations

from typing import Any

from pylon import pdk

name = "multi-auth"
priority = 2600
version = 0.1
type = "auth"

schema = {
    "type": "object",
    "title": "work with route or service object",
    "properties": {
        "auth_plugins": {
            "type": "array",
            "minItems": 2,
            "items": {"type": "object", "minProperties": 1},
        },
    },
    "required": ["auth_plugins"],
}

FAILED = (401, {"message": "Authorization Failed"})


class _Sub:
    __slots__ = ("conf", "fn", "name")

    def __init__(self, name: str, fn: Any, conf: Any) -> None:
        self.name = name
        self.fn = fn
        self.conf = conf


def _subs(conf: dict[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
    """(spec, checked configuration) per entry, or ValueError with APISIX's text."""
    here = pdk.node()
    out = []
    for entry in conf["auth_plugins"]:
        for plugin, sub in entry.items():
            spec = here.plugin(plugin)
            if spec is None:
                raise ValueError(f"{plugin} plugin did not found")
            if spec.type != "auth" or plugin == name or "rewrite" not in spec.hooks:
                raise ValueError(f"{plugin} plugin is not supported")
            try:
                checked = spec.check_conf(sub, "route")
            except ValueError as e:          # the node's PluginConfigError: APISIX's text
                inner = str(e).split(" err: ", 1)[-1]
                raise ValueError(f"multi-auth plugin failed to check the configuration of "
                                 f"plugin {plugin} err: {inner}") from None
            checked.pop("_meta", None)
            out.append((spec, checked))
    return out


def check(conf: dict[str, Any], schema_type: str) -> None:
    _subs(conf)


def prepare(conf: dict[str, Any]) -> tuple[_Sub, ...]:
    return tuple(_Sub(spec.name, spec.hooks["rewrite"],
                      spec.prepare(checked) if spec.prepare is not None else checked)
                 for spec, checked in _subs(conf))


def _run(sub: _Sub, ctx: pdk.Context) -> Any:
    try:
        return sub.fn(sub.conf, ctx)
    except pdk.Reply as e:
        return e.status, e.body, e.headers


async def _await(aw: Any) -> Any:
    try:
        return await aw
    except pdk.Reply as e:
        return e.status, e.body, e.headers


def _message(r: Any) -> tuple[Any, Any, Any]:
    if isinstance(r, int):
        return r, None, None
    status = r[0]
    body = r[1] if len(r) > 1 else None
    hdrs = r[2] if len(r) > 2 else None
    if isinstance(body, dict):
        body = body.get("message", body)
    return status, body, hdrs


def _deny(fails: list[tuple[str, Any]]) -> Any:
    challenges: list[tuple[str, str]] = []
    for plugin, r in fails:
        status, msg, hdrs = _message(r)
        pdk.log.warning("%s failed to authenticate the request, code: %s. error: %s",
                        plugin, status, msg)
        if hdrs:
            items = hdrs.items() if isinstance(hdrs, dict) else hdrs
            for k, v in items:
                k = k.decode("latin-1") if isinstance(k, bytes) else str(k)
                if k.lower() == "www-authenticate":
                    v = v.decode("latin-1") if isinstance(v, bytes) else str(v)
                    if ("WWW-Authenticate", v) not in challenges:
                        challenges.append(("WWW-Authenticate", v))
    if challenges:
        return FAILED[0], FAILED[1], challenges
    return FAILED


def rewrite(conf: tuple[_Sub, ...], ctx: pdk.Context) -> Any:
    fails: list[tuple[str, Any]] = []
    saved = ctx.extra_resp
    for i, sub in enumerate(conf):
        r = _run(sub, ctx)
        if r is None:
            return None
        if hasattr(r, "__await__"):
            return _rest(conf, ctx, i, r, fails, saved)
        fails.append((sub.name, r))
        ctx.extra_resp = saved
    return _deny(fails)


async def _rest(conf: tuple[_Sub, ...], ctx: pdk.Context, i: int, aw: Any,
                fails: list[tuple[str, Any]], saved: Any) -> Any:
    """The rest of ``rewrite`` once sub-plugin ``i`` answered with an awaitable."""
    while True:
        r = await _await(aw)
        if r is None:
            return None
        fails.append((conf[i].name, r))
        ctx.extra_resp = saved
        while True:
            i += 1
            if i == len(conf):
                return _deny(fails)
            r = _run(conf[i], ctx)
            if r is None:
                return None
            if hasattr(r, "__await__"):
                aw = r
                break
            fails.append((conf[i].name, r))
            ctx.extra_resp = saved
