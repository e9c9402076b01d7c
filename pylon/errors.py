"""One error tree for all of Pylon.

``PylonError`` is the base of every error Pylon raises itself.  Under it:

* ``ConfigError`` -- a node or declarative configuration is invalid (``path`` locates it);
  the config store's ``StoreError`` (``Conflict``), the router's ``RouterError``, the vars
  expressions' ``ExprError``, the plugins' ``PluginConfigError``, the rate limiters'
  ``RedisUnavailable`` and the HTTP client's ``HTTPError`` subclass ``PylonError`` where they
  are defined (their packages own them);
* ``GatewayError`` -- an error answered to a proxied client: each subclass carries an HTTP
  status, a stable snake_case detail code (it reaches the access log as ``$pylon_detail``)
  and the ``error_msg`` text of the JSON body; the exchange's reply coercion is the only
  place a status and body are chosen for one (``error_body``);
* ``AdminError`` -- an Admin API request refused: each subclass carries its HTTP status and
  the handler gives APISIX's ``error_msg`` text; ``pylon.admin.app.answer`` is the only place
  one (and a ``StoreError``, ``PluginConfigError``, ``RouterError`` or ``ExprError`` that
  reaches it) becomes ``(status, {"error_msg": ...})``.

``docs/errors.md`` is generated from this module (``python -m pylon.errors``).
"""

from __future__ import annotations

from typing import Any

import msgspec

_json = msgspec.json.Encoder()


class PylonError(Exception):
    """Base of every error raised by pylon itself."""


class ConfigError(PylonError):
    """A node or declarative configuration is invalid.  ``path`` locates the offending field."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path


class GatewayError(PylonError):
    """An error answered to a client.  Subclasses set ``status``, ``code`` and ``message``."""

    status = 500
    code = "internal_error"
    message = "500 Internal Server Error"
    #: the connection cannot be reused after this error (framing is unknown or broken)
    close = False

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.message)
        self.detail = detail


# --- client side (request) -------------------------------------------------------------
class BadRequest(GatewayError):
    """A request that is not valid HTTP/1.1 (start line, header, framing)."""

    status, code, message, close = 400, "bad_request", "400 Bad Request", True


class RequestSmuggling(BadRequest):
    """Ambiguous message framing (CL+TE, duplicate CL, bad chunk sizes, obs-fold)."""

    code = "ambiguous_framing"


class UnsupportedTransferCoding(GatewayError):
    """A Transfer-Encoding other than chunked."""

    status, code, message, close = 501, "unsupported_transfer_coding", "501 Not Implemented", True


class VersionNotSupported(GatewayError):
    """An HTTP major version other than 1 on the HTTP/1.1 port (HTTP/2.0, HTTP/0.9)."""

    status, code, message, close = (
        505, "http_version_not_supported", "505 HTTP Version Not Supported", True)


class RequestTimeout(GatewayError):
    """The client sent its request head or body too slowly."""

    status, code, message, close = 408, "request_timeout", "408 Request Timeout", True


class UriTooLong(GatewayError):
    """The request target is longer than the node allows."""

    status, code, message, close = 414, "uri_too_long", "414 Request-URI Too Large", True


class HeaderTooLarge(GatewayError):
    """The request head (a header line or all of them) is larger than the node allows."""

    status, code, message, close = (
        431, "request_header_too_large", "431 Request Header Fields Too Large", True)


class BodyTooLarge(GatewayError):
    """The request body is larger than ``client_max_body_size``."""

    status, code, message, close = (
        413, "request_body_too_large", "413 Request Entity Too Large", True)


class ClientCertRefused(GatewayError):
    """Over TLS, a request that needs a verified client certificate it does not have: the
    ssl object's ``skip_mtls_uri_regex`` does not cover its path, or its Host names an ssl
    object with ``client`` other than the one the handshake was made for (APISIX's 400)."""

    status, code, message = 400, "client_cert_refused", "400 Bad Request"


class RouteNotFound(GatewayError):
    """No route matches the request."""

    status, code, message = 404, "route_not_found", "404 Route Not Found"


# --- upstream side -----------------------------------------------------------------------
class UpstreamError(GatewayError):
    """The upstream could not give an answer (base of the upstream side)."""

    status, code, message = 502, "upstream_error", "502 Bad Gateway"
    #: a retry on another node may succeed
    retryable = True


class NoUpstream(UpstreamError):
    """The matched route has no upstream (none configured, or its upstream is gone)."""

    status, code, message = 503, "no_upstream", "503 Service Temporarily Unavailable"
    retryable = False


class NoHealthyUpstream(UpstreamError):
    """Every node of the upstream is down (health checks) or already tried."""

    status, code, message = 502, "no_healthy_upstream", "502 Bad Gateway"
    retryable = False


class UpstreamConnectFailed(UpstreamError):
    """Connecting to the upstream node failed (refused, unreachable)."""

    code = "upstream_connect_failed"


class UpstreamConnectTimeout(UpstreamError):
    """Connecting to the upstream node took longer than ``timeout.connect``."""

    status, code, message = 504, "upstream_connect_timeout", "504 Gateway Time-out"


class UpstreamTLSError(UpstreamError):
    """The TLS handshake with the upstream node failed."""

    code = "upstream_tls_error"


class UpstreamSendTimeout(UpstreamError):
    """Sending the request to the upstream took longer than ``timeout.send``."""

    status, code, message = 504, "upstream_send_timeout", "504 Gateway Time-out"


class UpstreamReadTimeout(UpstreamError):
    """The upstream did not answer within ``timeout.read``."""

    status, code, message = 504, "upstream_response_timeout", "504 Gateway Time-out"


class UpstreamReset(UpstreamError):
    """The upstream closed or reset the connection before its answer was whole."""

    code = "upstream_reset"


class UpstreamRefused(UpstreamError):
    """The upstream did not process the request (HTTP/2 REFUSED_STREAM, or a stream above
    a GOAWAY's last stream id): it may be sent again, whatever its method."""

    code = "upstream_refused"


class GrpcDeadlineExceeded(UpstreamError):
    """The gRPC call's deadline (its ``grpc-timeout``) passed before the upstream's answer
    ended."""

    status, code, message = 504, "grpc_deadline_exceeded", "504 Gateway Time-out"
    retryable = False


class UpstreamBadResponse(UpstreamError):
    """The upstream's answer is not valid HTTP/1.x."""

    code = "upstream_bad_response"
    retryable = False


class RetriesExhausted(UpstreamError):
    """Every retry allowed (``retries``, ``retry_timeout``) failed."""

    code = "upstream_retries_exhausted"
    retryable = False


class InternalError(GatewayError):
    """Any exception that is not a GatewayError: a bug, logged with its traceback."""


class PluginFailed(InternalError):
    """A plugin hook raised (logged with the plugin's name and traceback)."""

    code = "plugin_failed"


# --- Admin API ---------------------------------------------------------------------------
class AdminError(PylonError):
    """An Admin API request refused: ``status`` and ``{"error_msg": <APISIX's text>}``."""

    status = 500

    def __init__(self, error_msg: str, **fields: Any) -> None:
        super().__init__(error_msg)
        self.error_msg = error_msg
        #: further members of the JSON body (``description``, ``errors``)
        self.fields = fields

    def body(self) -> dict[str, Any]:
        return {"error_msg": self.error_msg, **self.fields}

    def within(self, prefix: str) -> AdminError:
        """The same refusal, its text prefixed (a batch names the failing operation)."""
        err = AdminError(prefix + self.error_msg)
        err.status = self.status
        return err


class InvalidRequest(AdminError):
    """The request or the object it carries is refused (schema, references, plugins, ids)."""

    status = 400


class Unauthorized(AdminError):
    """No valid Admin API key (``description`` says why)."""

    status = 401


class Forbidden(AdminError):
    """The client's address is not in ``allow_admin``."""

    status = 403


class NotFound(AdminError):
    """No such path, resource kind or plugin."""

    status = 404


class KeyNotFound(NotFound):
    """The object named does not exist: APISIX's ``{"message": "Key not found"}``."""

    def __init__(self) -> None:
        super().__init__("Key not found")

    def body(self) -> dict[str, Any]:
        return {"message": self.error_msg}


class MethodNotAllowed(AdminError):
    """The method is not supported on this path (POST where the id is the URL's...)."""

    status = 405


class Unavailable(AdminError):
    """The node cannot serve the request now (explain or a plugin reload unavailable); a
    store that is down or a write that keeps conflicting is answered 503 too."""

    status = 503


def error_body(message: str) -> bytes:
    return _json.encode({"error_msg": message})


def all_errors() -> list[type[GatewayError]]:
    out: list[type[GatewayError]] = []
    todo: list[type[GatewayError]] = [GatewayError]
    while todo:
        cls = todo.pop(0)
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def _subclasses(base: type[AdminError]) -> list[type[AdminError]]:
    out: list[type[AdminError]] = []
    todo = [base]
    while todo:
        cls = todo.pop(0)
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def _doc(cls: type) -> str:
    text = " ".join((cls.__doc__ or "").split("\n\n")[0].split())
    return text.replace("|", "\\|")


def render_docs() -> str:
    lines = [
        "# Errors",
        "",
        "Generated by `python -m pylon.errors` from `pylon/errors.py`; do not edit by hand.",
        "",
        "Every error Pylon raises itself is a `PylonError`.  Under it:",
        "",
        "- `ConfigError`: " + _doc(ConfigError),
        "- errors owned by their packages, each a `PylonError`: `config.store.StoreError` (and",
        "  its `Conflict`: a write raced another), `routing.router.RouterError`,",
        "  `routing.expr.ExprError`, `proxy.registry.PluginConfigError`,",
        "  `ratelimit.RedisUnavailable`, `upstream.client.HTTPError`;",
        "- `GatewayError`: the errors a proxied client sees (below);",
        "- `AdminError`: the errors an Admin API client sees (below).",
        "",
        "## Proxy: detail codes",
        "",
        "Each error a client sees has a status, a JSON body `{\"error_msg\": ...}` and a stable",
        "detail code that is written to the access log (`$pylon_detail`).",
        "",
        "| detail code | status | error_msg | closes connection | meaning |",
        "|---|---|---|---|---|",
    ]
    seen = set()
    for cls in all_errors():
        if cls.code in seen or cls is GatewayError:     # InternalError says it better
            continue
        seen.add(cls.code)
        lines.append(f"| `{cls.code}` | {cls.status} | {cls.message} | "
                     f"{'yes' if cls.close else 'no'} | {_doc(cls)} |")
    lines += [
        "",
        "## Admin API",
        "",
        "A handler raises one of these with APISIX's `error_msg` text; `pylon.admin.app.answer`",
        "turns it into the reply `(status, {\"error_msg\": ...})`.  There too a `StoreError`",
        "becomes 503 (`failed to store the configuration: ...`; a `Conflict` that persists:",
        "its own text), a `PluginConfigError`, `RouterError` or `ExprError` 400 with its text,",
        "and any other exception 500 `internal error` (logged with its traceback).",
        "",
        "| class | status | meaning |",
        "|---|---|---|",
    ]
    for a in _subclasses(AdminError):
        if a is not AdminError:
            lines.append(f"| `{a.__name__}` | {a.status} | {_doc(a)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - docs generator
    print(render_docs(), end="")
