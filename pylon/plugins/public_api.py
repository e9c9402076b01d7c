"""public-api (APISIX): serve a plugin's own endpoint on the route it is configured on.

Plugins expose HTTP endpoints through a module function ``api()`` (``[{"methods",
"uri", "handler"}]``: prometheus' ``/apisix/prometheus/metrics``, batch-requests'
``/apisix/batch-requests``).  None is reachable until a route with ``public-api`` matches
the request: the endpoint at ``uri`` (default: the request's own path) answers it, with the
route's other plugins (authentication, rate limits...) run before, as for any route.  No
endpoint at that path for the request's method: 404.
"""

from __future__ import annotations

from typing import Any

from pylon import pdk

name = "public-api"
priority = 501
version = 0.1

schema = {
    "type": "object",
    "properties": {"uri": {"type": "string"}},
}


def prepare(conf: dict[str, Any]) -> str | None:
    return conf.get("uri")


def access(uri: str | None, ctx: pdk.Context) -> Any:
    api = pdk.node().api_match(ctx.method, uri or ctx.uri)
    if api is None:
        return 404
    return api.handler(ctx)
