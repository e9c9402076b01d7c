"""The Pylon plugin development kit: everything a plugin author imports.

A plugin is one module with ``name``, ``priority``, ``schema`` and phase hooks (see
``docs/writing-a-plugin.md``).  A hook gets its prepared configuration and ``ctx`` (the
request: ``pylon.pdk.Context``) and ends the request by returning a reply::

    return 401, {"message": "Missing API key in request"}
    return 302, None, {"Location": "https://example.com/"}
    return 403

Anything else (None) lets the request go on.  A hook may be ``async def`` (reading the
body, calling another service); plain hooks cost no task.

The pdk is the whole plugin contract: a plugin imports ``pylon.pdk`` and its submodules only
(a layering check enforces it for the built-in plugins).  Here: ``Context``, ``Reply``, the
consumer types and helpers, schema-error wording, ``VERSION``...; in submodules, what groups
of plugins share: ``match`` (vars expressions, PCRE, IP ranges, client addresses),
``ratelimit``, ``logger``, ``metrics``, ``tracing``, ``encoding``, ``template``, ``http``,
``cache``, and ``runtime`` (``pdk.node()``: the node a plugin runs in -- another plugin, plugin
endpoints, the master).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import hmac
import json
import logging
from collections.abc import Iterator
from typing import Any, get_args
from urllib.parse import unquote_plus

from .. import __version__
from ..errors import BodyTooLarge, PylonError
from ..model.route import Method
from ..model.schema_errors import lua_error, schema_message
from ..model.validate import convert
from ..observe.log_entry import multi_dict
from ..wire.h1 import status_line
from .consumers import Consumer, ConsumerIndex, Credential
from .context import Context, RouteInfo
from .match import compile_expr
from .runtime import node
from .stream import StreamContext

log = logging.getLogger("pylon.plugin")

#: this Pylon's version (``Pylon/<VERSION>`` in answers that name the server)
VERSION: str = __version__
#: the HTTP methods a route (and a batch-requests pipeline item) may name
METHODS: tuple[str, ...] = get_args(Method)


class Reply(Exception):
    """Raise from anywhere inside a hook to end the request (same as returning it)."""

    def __init__(self, status: int, body: Any = None, headers: Any = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers


def attach_consumer(ctx: Context, cred: Credential) -> None:
    """Mark the request as made by ``cred``'s consumer (APISIX ``consumer.attach_consumer``):
    ``$consumer_name`` and the consumer's plugins apply from here on, and the upstream gets
    ``X-Consumer-Username``, ``X-Credential-Identifier`` and ``X-Consumer-Custom-Id``."""
    cons = cred.consumer
    ctx.consumer = cons
    ctx.credential = cred
    ctx.consumer_name = cons.username
    head = ctx.head
    have = head._lower                  # usually built already (the auth plugin's lookup)
    if have is None:
        have = head.header_map()
    if b"x-consumer-username" in have or b"x-credential-identifier" in have or \
            b"x-consumer-custom-id" in have:            # sent by the client: replaced
        ctx.set_headers({"X-Consumer-Username": cons.username,
                         "X-Credential-Identifier": cred.id,
                         "X-Consumer-Custom-Id": cons.custom_id})
        return
    head.headers.extend(cred.headers or cred.upstream_headers())
    head._lower = None
    ctx._mid = None


def anonymous_credential(ctx: Context, plugin: str, username: str) -> Credential | None:
    """The credential an auth plugin's ``anonymous_consumer`` stands for (None, logged,
    when no such consumer exists: the plugin then answers 401 as APISIX does)."""
    cons = ctx.consumers.consumers.get(username)
    if cons is None:
        log.error("%s failed to authenticate the request, code: 401. error: anonymous "
                  "consumer %s not found", plugin, username)
        return None
    return Credential(cons, None, plugin, None)


def challenge(scheme: str, realm: str) -> dict[str, str]:
    """The ``WWW-Authenticate`` header an auth plugin's 401 carries (APISIX 3.15's ``realm``
    options): ``{"WWW-Authenticate": '<scheme> realm="<realm>"'}``, the realm quoted."""
    quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
    return {"WWW-Authenticate": f'{scheme} realm="{quoted}"'}


def secure_equal(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time comparison for secrets."""
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    return hmac.compare_digest(a, b)


def b64decode(s: str | bytes, urlsafe: bool = False) -> bytes:
    """Base64 with or without padding; raises ValueError on bad input."""
    if isinstance(s, str):
        s = s.encode("latin-1")
    s = s + b"=" * (-len(s) % 4)
    try:
        return base64.urlsafe_b64decode(s) if urlsafe else base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"bad base64: {e}") from None


def plugin_attr(name: str) -> dict[str, Any]:
    """The node config's ``plugin_attr.<name>`` (APISIX: node-wide plugin attributes, e.g.
    prometheus' export address); ``{}`` when the node config has none."""
    return node().plugin_attr(name)


_warned: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "pylon_config_warnings", default=None)
_logged: set[str] = set()


def config_warning(message: str) -> None:
    """A configuration that is accepted but deserves attention (``check`` may call it): the
    error log has it (once per process), and an Admin API write that carries it answers
    with it in a ``warning`` field next to ``key`` / ``value``."""
    if message not in _logged and len(_logged) < 1024:
        _logged.add(message)
        log.warning("%s", message)
    collected = _warned.get()
    if collected is not None and message not in collected:
        collected.append(message)


@contextlib.contextmanager
def collect_config_warnings() -> Iterator[list[str]]:
    """The ``config_warning`` messages raised inside the block (the Admin API's checks)."""
    collected: list[str] = []
    token = _warned.set(collected)
    try:
        yield collected
    finally:
        _warned.reset(token)


def node_setting(name: str) -> Any:
    """A resolved setting of the node config (``pylon.settings.Settings.<name>``, e.g.
    ``proxy_cache`` for ``apisix.proxy_cache``); None in a process without a node config."""
    return node().setting(name)


def json_error(e: ValueError) -> str:
    """A JSON body's parse error in APISIX's (cjson's) words: ``Expected value but found
    invalid token at character N`` and the like; anything else as itself."""
    if isinstance(e, json.JSONDecodeError):
        return f"Expected value but found invalid token at character {e.pos + 1}" \
            if e.msg == "Expecting value" else f"{e.msg} at character {e.pos + 1}"
    return str(e)


def decode_args(s: str) -> dict[str, Any]:
    """``ngx.decode_args``: ``a=1&a=2&b`` → ``{"a": ["1", "2"], "b": True}``."""
    def pairs() -> Iterator[tuple[str, str | bool]]:
        for part in s.split("&"):
            if part:
                k, eq, v = part.partition("=")
                yield (unquote_plus(k, encoding="latin-1"),
                       unquote_plus(v, encoding="latin-1") if eq else True)
    return multi_dict(pairs())


def reason_phrase(status: int) -> str:
    """The reason phrase of ``status`` as the gateway sends it (``OK``, ``Not Found``...)."""
    return status_line(status)[13:-2].decode("latin-1")


def check_upstream(conf: Any, path: str) -> None:
    """Raise ValueError (``<path>: <message>``, the Admin API's wording) unless ``conf`` is a
    valid upstream object (traffic-split's inline upstreams)."""
    _, rej = convert("upstreams", conf, path)
    if rej is not None:
        raise ValueError(f"{rej.path}: {rej.message}")


__all__ = ["METHODS", "VERSION", "BodyTooLarge", "Consumer", "ConsumerIndex", "Context",
           "node",
           "Credential", "PylonError", "Reply", "RouteInfo", "anonymous_credential",
           "attach_consumer", "b64decode", "challenge", "check_upstream",
           "collect_config_warnings", "compile_expr", "config_warning", "decode_args",
           "json_error", "log", "lua_error", "multi_dict", "node_setting", "plugin_attr",
           "reason_phrase", "schema_message", "secure_equal", "StreamContext"]
