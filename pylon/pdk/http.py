"""``pylon.pdk.http``: the HTTP client plugins call other services with (forward-auth,
http-logger, openid-connect, proxy-mirror, batch-requests).

    from pylon.pdk import http
    resp = await http.request("POST", "http://127.0.0.1:9000/auth", headers=..., body=...,
                              timeout=3.0)

The client itself lives in ``pylon.upstream.client`` (the observability exporters below the
PDK use it too); this module is its public, stable plugin-facing name.
"""

from __future__ import annotations

from ..upstream.client import HTTPError, HTTPTimeout, Response, close_idle, request

__all__ = ["HTTPError", "HTTPTimeout", "Response", "close_idle", "request"]
