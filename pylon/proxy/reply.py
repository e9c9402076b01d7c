"""What a request hook's answer becomes: status, headers and body of a local reply.

A hook answers by returning (or raising) ``pdk.Reply(status, body, headers)``, or by
returning ``status``, ``(status, body)`` or ``(status, body, headers)``.  A ``str`` body is
sent as text, ``bytes`` as they are, anything else as JSON; headers are a dict or pairs, a
list value repeats the header.  A hook that raises anything else (or returns something that
is none of these) answers ``500 plugin_failed``; a ``GatewayError`` raised answers itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

import msgspec

from .. import errors
from ..pdk import Reply

if TYPE_CHECKING:
    from .chain import Hook
    from .exchange import Exchange

log = logging.getLogger("pylon.proxy")

JSON: Final = [(b"Content-Type", b"application/json; charset=utf-8")]
_TEXT: Final = [(b"Content-Type", b"text/plain; charset=utf-8")]
_json = msgspec.json.Encoder()


def hook_raised(x: Exchange, h: Hook, e: Exception) -> None:
    """A request hook raised ``e``: a ``Reply`` answers, a ``GatewayError`` answers itself,
    anything else is the plugin's bug (logged, 500)."""
    if isinstance(e, Reply):
        plugin_reply(x, h, e)
    elif isinstance(e, errors.GatewayError):
        x.reply_error(e)
    else:
        log.error("plugin %s failed in %s for %s %s", h.name, h.phase, x.head.method,
                  x.head.path, exc_info=e)
        x.reply_error(errors.PluginFailed(f"plugin {h.name} failed"))


def plugin_reply(x: Exchange, h: Hook, r: Any) -> None:
    """A hook's answer (returned or raised) → the response."""
    try:
        if isinstance(r, Reply):
            status, body, hdrs = r.status, r.body, r.headers
        elif isinstance(r, int):
            status, body, hdrs = r, None, None
        else:
            status, body = r[0], r[1]
            hdrs = r[2] if len(r) > 2 else None
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise TypeError(f"bad status {status!r}")
    except (TypeError, IndexError, KeyError):
        log.error("plugin %s returned %r from %s; expected status or (status, body)",
                  h.name, r, h.phase)
        x.reply_error(errors.PluginFailed(f"plugin {h.name} failed"))
        return
    if h.error_response is not None and status >= 400:
        body = h.error_response
    x.detail = x.detail or f"plugin_{h.name}"
    x.reply_local(status, *_encode(body, hdrs), False)


def _encode(body: Any, hdrs: Any) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """A reply's body and headers as the wire has them: (headers, body bytes)."""
    headers: list[tuple[bytes, bytes]]
    if body is None:
        data, headers = b"", []
    elif isinstance(body, bytes):
        data, headers = body, []
    elif isinstance(body, str):
        data, headers = body.encode(), list(_TEXT)
    else:
        data, headers = _json.encode(body), list(JSON)
    if hdrs:
        items = hdrs.items() if isinstance(hdrs, dict) else hdrs
        for n, v in items:
            nb = n.encode("latin-1") if isinstance(n, str) else n
            if nb.lower() == b"content-type":
                headers = [(k, x) for k, x in headers if k.lower() != b"content-type"]
            if isinstance(v, (list, tuple)):
                headers.extend((nb, str(x).encode("latin-1")) for x in v)
            else:
                headers.append((nb, v.encode("latin-1") if isinstance(v, str)
                                else str(v).encode("latin-1") if not isinstance(v, bytes)
                                else v))
    return headers, data
