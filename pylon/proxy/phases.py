"""The plugin phases of one request: which hooks run, in which order, and resuming after an
async hook.

Request phases, in order (APISIX's), each a named step of the runner:

    GLOBAL_REWRITE, GLOBAL_ACCESS          the global rules' rewrite and access hooks
    ROUTE_REWRITE                          the route's rewrite hooks (auth plugins attach a
                                           consumer here)
    CONSUMER_REWRITE                       the consumer's plugins merged into the route's
                                           chain; rewrite hooks the consumer brought
    ROUTE_ACCESS                           the merged chain's access hooks
    GLOBAL_BEFORE_PROXY, ROUTE_BEFORE_PROXY
    PROXY                                  all done: the request goes upstream

A hook lets the request through (returns None), answers it (returns or raises ``pdk.Reply``,
a status or a ``(status, body[, headers])`` tuple: ``proxy/reply.py``), or is a coroutine:
then the runner stops, a task awaits it and the runner resumes at the next hook
(``Exchange.step`` / ``hook_i`` say where).  Response phases (header_filter, body_filter,
log) run global rules' hooks first, then the route's; they are joined once per request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Final

from .. import errors
from .chain import Chain, Hook
from .reply import hook_raised, plugin_reply
from .state import DONE, PHASES

if TYPE_CHECKING:
    from ..pdk.context import Encoder
    from .exchange import Exchange

log = logging.getLogger("pylon.proxy")

GLOBAL_REWRITE: Final = 0
GLOBAL_ACCESS: Final = 1
ROUTE_REWRITE: Final = 2
CONSUMER_REWRITE: Final = 3
ROUTE_ACCESS: Final = 4
GLOBAL_BEFORE_PROXY: Final = 5
ROUTE_BEFORE_PROXY: Final = 6
PROXY: Final = 7

#: a phase's hooks in run order; body_filter's may end with a content encoding
Hooks = tuple[Hook, ...]
BodyHooks = tuple["Hook | EncodeHook", ...]


def response_phases(x: Exchange) -> None:
    """Join the global rules' and the route's response hooks for this request."""
    # Only non-empty phases are stored: the defaults (empty) stay as they are.
    c, g = x.chain, x.gchain
    hf = g.header_filter + c.header_filter if g.header_filter else c.header_filter
    if hf or x.hf:
        x.hf = hf
    bf = g.body_filter + c.body_filter if g.body_filter else c.body_filter
    if bf or x.bf:
        x.bf = bf
    lg = g.log + c.log if g.log else c.log
    if lg or x.lg:
        x.lg = lg


def start(x: Exchange, c: Chain, g: Chain) -> bool:
    """After routing, for a route with plugins (``c``, or global rules ``g``): take its
    response hooks and run its request phases.  True when the request goes upstream now;
    False when a hook answered it or an async hook is running (``run`` resumes).

    The common case -- no global rules -- runs the route's phases in order without the
    step machine, and a phase the route has no hook for costs one test."""
    x.chain = c
    if not g.empty:
        x.gchain = g
        response_phases(x)
        x.state = PHASES
        return run(x)
    if c.response:                      # the route's own response hooks, as they are
        x.hf = c.header_filter
        x.bf = c.body_filter
        x.lg = c.log
    if not c.request:
        return True
    x.state = PHASES
    if c.rewrite and not run_hooks(x, c.rewrite, ROUTE_REWRITE):
        return False
    cons = x.consumer
    if cons is not None and cons.plugins:       # the consumer's plugins join the chain
        x.step = CONSUMER_REWRITE
        return run(x)
    if c.access and not run_hooks(x, c.access, ROUTE_ACCESS):
        return False
    if c.before_proxy and not run_hooks(x, c.before_proxy, ROUTE_BEFORE_PROXY):
        return False
    x.step = PROXY
    return True


def run(x: Exchange) -> bool:
    """Run (or resume) the request phases step by step (global rules, a consumer's
    plugins, after an async hook).  True when every hook let the request through; False
    when one answered it or an async hook is running (``resume`` follows it)."""
    g = x.gchain
    step = x.step
    while step < PROXY:
        i = x.hook_i
        hooks: Hooks
        if step == GLOBAL_REWRITE:
            hooks = g.rewrite
        elif step == GLOBAL_ACCESS:
            hooks = g.access
        elif step == ROUTE_REWRITE:
            if x.route is None:          # no route matched: the global rules only
                x.step = step
                return True
            hooks = x.chain.rewrite
        elif step == CONSUMER_REWRITE:
            cons = x.consumer
            hooks = ()
            if cons is not None and cons.plugins and i == 0:
                x.chain = merged = cons.chain_for(x.chain)
                response_phases(x)
                hooks = merged.consumer_rewrite
            elif i:
                hooks = x.chain.consumer_rewrite
        elif step == ROUTE_ACCESS:
            hooks = x.chain.access
        elif step == GLOBAL_BEFORE_PROXY:
            hooks = g.before_proxy
        else:
            hooks = x.chain.before_proxy
        if hooks and not run_hooks(x, hooks, step, i):
            return False
        step += 1
        x.hook_i = 0
    x.step = step
    return True


def run_hooks(x: Exchange, hooks: Hooks, step: int, start: int = 0) -> bool:
    """Run ``hooks[start:]`` of request step ``step``: True when all let the request
    through; False when one answered or is running asynchronously."""
    for h in hooks[start:] if start else hooks:
        if h.filter is not None and not h.filter(x):
            continue
        try:
            r = h.fn(h.conf, x)
        except Exception as e:  # noqa: BLE001 - Reply, or a plugin's bug
            hook_raised(x, h, e)
            return False
        if r is not None:
            if hasattr(r, "__await__"):
                x.step = step
                x.hook_i = hooks.index(h) + 1
                x.plugin_task = x.loop.create_task(_await_hook(x, h, r))
                return False
            plugin_reply(x, h, r)
            return False
    return True


async def _await_hook(x: Exchange, h: Hook, aw: Awaitable[Any]) -> None:
    try:
        r = await aw
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001
        x.plugin_task = None
        if x.state != DONE:
            hook_raised(x, h, e)
        return
    x.plugin_task = None
    if x.state == DONE:
        return
    if r is not None:
        plugin_reply(x, h, r)
        return
    try:
        x.request_phases()
    except Exception:
        log.exception("internal error after plugin %s", h.name)
        x.reply_error(errors.InternalError())


# -- response phases ----------------------------------------------------------------------
class EncodeHook:
    """A content encoding (``ctx.encode_body``) as the last body_filter hook."""

    __slots__ = ("conf",)
    filter = None
    name = "content-encoding"

    def __init__(self, encode: Encoder) -> None:
        self.conf = encode

    @staticmethod
    def fn(encode: Encoder, ctx: object, data: bytes, last: bool) -> bytes:
        return encode(data, last)


def header_filter(x: Exchange) -> None:
    for h in x.hf:
        if h.filter is not None and not h.filter(x):
            continue
        h.fn(h.conf, x)
    if x.body_encoder is not None:
        _start_encoder(x)


def _start_encoder(x: Exchange) -> None:
    """``ctx.encode_body``: with the headers final, the encoding (if it still applies)
    becomes the last body filter, as nginx's gzip filter runs after the Lua ones."""
    start = x.body_encoder
    x.body_encoder = None
    encode = start(x) if start is not None else None
    if encode is not None:
        x.body_changed = True
        x.bf = (*x.bf, EncodeHook(encode))


def body_filter(x: Exchange, data: bytes, last: bool) -> bytes:
    for h in x.bf:
        if h.filter is not None and not h.filter(x):
            continue
        out = h.fn(h.conf, x, data, last)
        if out is not None:
            data = out
    return data


def log_phase(x: Exchange) -> None:
    for h in x.lg:
        if h.filter is not None and not h.filter(x):
            continue
        try:
            h.fn(h.conf, x)
        except Exception:
            log.exception("plugin %s failed in log", h.name)
