"""openid-connect: OpenID Connect relying party and bearer token validation (APISIX).

Two ways in, as APISIX's plugin (lua-resty-openidc underneath) does them:

* **Bearer tokens** (``bearer_only``, or ``introspection_endpoint`` / ``public_key`` /
  ``use_jwks`` configured): ``Authorization: Bearer <token>`` (or a client
  ``X-Access-Token``) is checked locally (``public_key``, or the provider's JWKS from the
  discovery document with ``use_jwks``: signature, ``exp``/``nbf``, ``iss``) or by RFC 7662
  introspection (client auth ``client_secret_basic`` / ``client_secret_post`` /
  ``client_secret_jwt`` / ``private_key_jwt``; active results cached until their ``exp``).
  Then ``required_scopes``, ``claim_validator.audience`` and ``claim_schema``.  Failures: 401
  with ``WWW-Authenticate: Bearer realm="<realm>", error="invalid_token",
  error_description="..."``; a missing token with ``bearer_only``: 401 with
  ``WWW-Authenticate: Bearer realm="<realm>"``.
* **Authorization code flow** (no bearer token, ``bearer_only`` false): 302 to the
  provider's authorization endpoint with ``state`` (``nonce`` with ``use_nonce``, PKCE S256
  with ``use_pkce``); the callback at ``redirect_uri`` (default: the request path +
  ``/.apisix/redirect``) exchanges the code, validates the ID token (signature, ``iss``,
  ``aud``, ``nonce``, ``iat``, ``exp``), calls userinfo and keeps it all in an encrypted,
  authenticated cookie session (AES-256-GCM keyed from ``session.secret``; split into
  chunks past 4000 bytes); the access token is refreshed with the refresh token when it
  expires.  ``logout_path`` ends the session and redirects to the provider's
  ``end_session_endpoint`` (or ``post_logout_redirect_uri``).  ``unauth_action``:
  ``auth`` (redirect), ``deny`` (401), ``pass``.

The upstream gets ``X-Access-Token`` (or ``Authorization: Bearer`` with
``access_token_in_authorization_header``), ``X-ID-Token`` and ``X-Userinfo`` (base64 JSON),
optionally ``X-Refresh-Token`` and ``X-Raw-ID-Token``; the same headers sent by the client
are removed first.  Discovery documents and JWKS are cached per process (JWKS refetched,
at most once a second, when a token names an unknown ``kid``).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import json
import os
import secrets
import time
import zlib
from typing import Any
from urllib.parse import urlencode

import fastjsonschema
import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pylon import pdk
from pylon.pdk import http

name = "openid-connect"
priority = 2599
version = 0.2

_STR = {"type": "string"}
_BOOL_F = {"type": "boolean", "default": False}
_BOOL_T = {"type": "boolean", "default": True}
_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt",
                 "client_secret_jwt"]

schema: dict[str, Any] = {
    "type": "object",
    "properties": {
        "client_id": _STR,
        "client_secret": _STR,
        "discovery": _STR,
        "scope": {"type": "string", "default": "openid"},
        "ssl_verify": _BOOL_T,
        "timeout": {"type": "integer", "minimum": 1, "default": 3,
                    "description": "timeout in seconds"},
        "introspection_endpoint": _STR,
        "introspection_endpoint_auth_method": {"type": "string",
                                               "default": "client_secret_basic"},
        "token_endpoint_auth_method": {"type": "string", "default": "client_secret_basic"},
        "bearer_only": _BOOL_F,
        "session": {
            "type": "object",
            "properties": {
                "secret": {"type": "string", "minLength": 16,
                           "description": "the key used for the encrypt and HMAC "
                                          "calculation"},
                "cookie_name": _STR,
                "cookie_path": _STR,
                "cookie_domain": _STR,
                "cookie_secure": {"type": "boolean"},
                "cookie_http_only": {"type": "boolean"},
                "cookie_same_site": {"type": "string",
                                     "enum": ["Strict", "Lax", "None", "Default"]},
                "idling_timeout": {"type": "integer"},
                "rolling_timeout": {"type": "integer"},
                "absolute_timeout": {"type": "integer"},
                "cookie": {"type": "object",
                           "properties": {"lifetime": {"type": "integer"}}},
                "storage": {"type": "string", "enum": ["cookie", "redis"],
                            "default": "cookie"},
                "redis": {
                    "type": "object",
                    "properties": {
                        "host": {"type": "string", "minLength": 2, "default": "127.0.0.1"},
                        "port": {"type": "integer", "minimum": 1, "default": 6379},
                        "username": {"type": "string", "minLength": 1},
                        "password": {"type": "string", "minLength": 0},
                        "database": {"type": "integer", "minimum": 0, "default": 0},
                        "prefix": {"type": "string", "default": "sessions"},
                        "ssl": _BOOL_F,
                        "ssl_verify": _BOOL_T,
                        "server_name": _STR,
                        "connect_timeout": {"type": "integer", "minimum": 1,
                                            "default": 1000},
                        "send_timeout": {"type": "integer", "minimum": 1, "default": 1000},
                        "read_timeout": {"type": "integer", "minimum": 1, "default": 1000},
                        "keepalive_timeout": {"type": "integer", "minimum": 1000,
                                              "default": 10000},
                    },
                },
            },
            "required": ["secret"],
            "if": {"properties": {"storage": {"enum": ["redis"]}}},
            "then": {"required": ["redis"]},
            "additionalProperties": False,
        },
        "realm": {"type": "string", "default": "apisix"},
        "claim_validator": {
            "type": "object",
            "properties": {
                "issuer": {"type": "object", "properties": {
                    "valid_issuers": {"type": "array", "items": _STR}}},
                "audience": {"type": "object", "properties": {
                    "claim": {"type": "string", "default": "aud"},
                    "required": _BOOL_F,
                    "match_with_client_id": _BOOL_F}},
            },
        },
        "logout_path": {"type": "string", "default": "/logout"},
        "redirect_uri": _STR,
        "post_logout_redirect_uri": _STR,
        "unauth_action": {"type": "string", "default": "auth",
                          "enum": ["auth", "deny", "pass"]},
        "public_key": _STR,
        "use_jwks": _BOOL_F,
        "token_signing_alg_values_expected": _STR,
        "use_pkce": _BOOL_F,
        "par": {"type": "object", "properties": {
            "enabled": _BOOL_F, "endpoint": _STR,
            "endpoint_auth_method": {"type": "string", "enum": _AUTH_METHODS}},
            "additionalProperties": False},
        "dpop": {"type": "object", "properties": {
            "enabled": _BOOL_F,
            "signing_alg": {"type": "string", "enum": ["ES256", "RS256", "PS256"],
                            "default": "ES256"},
            "private_key": _STR, "public_jwk": {"type": "object"}},
            "additionalProperties": False},
        "set_access_token_header": _BOOL_T,
        "access_token_in_authorization_header": _BOOL_F,
        "set_id_token_header": _BOOL_T,
        "set_raw_id_token_header": _BOOL_F,
        "set_userinfo_header": _BOOL_T,
        "set_refresh_token_header": _BOOL_F,
        "proxy_opts": {"type": "object", "properties": {
            "http_proxy": _STR, "https_proxy": _STR, "http_proxy_authorization": _STR,
            "https_proxy_authorization": _STR, "no_proxy": _STR}},
        "authorization_params": {"type": "object"},
        "client_rsa_private_key": _STR,
        "client_rsa_private_key_id": _STR,
        "client_jwt_assertion_expires_in": {"type": "integer", "default": 60},
        "client_jwt_assertion_alg": {"type": "string", "enum": ["HS256", "HS512", "RS256",
                                                                "RS512", "ES256", "ES512"]},
        "client_jwt_assertion_audience": _STR,
        "renew_access_token_on_expiry": _BOOL_T,
        "access_token_expires_in": {"type": "integer"},
        "refresh_session_interval": {"type": "integer"},
        "iat_slack": {"type": "integer", "default": 120},
        "accept_none_alg": _BOOL_F,
        "accept_unsupported_alg": _BOOL_T,
        "access_token_expires_leeway": {"type": "integer", "default": 0},
        "force_reauthorize": _BOOL_F,
        "use_nonce": _BOOL_F,
        "revoke_tokens_on_logout": _BOOL_F,
        "jwk_expires_in": {"type": "integer", "default": 86400},
        "jwt_verification_cache_ignore": _BOOL_F,
        "cache_segment": _STR,
        "introspection_interval": {"type": "integer", "default": 0},
        "introspection_expiry_claim": _STR,
        "introspection_addon_headers": {"type": "array", "minItems": 1,
                                        "items": {"type": "string", "pattern": "^[^:]+$"}},
        "required_scopes": {"type": "array", "items": _STR},
        "claim_schema": {"type": "object"},
    },
    "required": ["client_id", "discovery"],
}
#: APISIX's, and Pylon's own proxy credentials (``proxy_opts.*_authorization``)
encrypt_fields = ("client_secret", "client_rsa_private_key", "dpop.private_key",
                  "session.secret", "session.redis.password",
                  "proxy_opts.http_proxy_authorization", "proxy_opts.https_proxy_authorization")

_RESERVED_FLAT = (("use_par", "par.enabled"),
                  ("pushed_authorization_request_endpoint", "par.endpoint"),
                  ("pushed_authorization_request_endpoint_auth_method",
                   "par.endpoint_auth_method"),
                  ("use_dpop", "dpop.enabled"), ("dpop_signing_alg", "dpop.signing_alg"),
                  ("dpop_private_key", "dpop.private_key"),
                  ("dpop_public_jwk", "dpop.public_jwk"))
_OUT_HEADERS = ("X-Access-Token", "X-Userinfo", "X-ID-Token", "X-Refresh-Token",
                "X-Raw-ID-Token")
_ASYM_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
                        "ES384", "ES512", "EdDSA"})
_HMAC_ALGS = frozenset({"HS256", "HS384", "HS512"})
_REDIRECT_SUFFIX = "/.apisix/redirect"
_JWS = jwt.api_jws.PyJWS()
_MAX_AUTH_FLOW_RESTARTS = 3
_STATE_MISMATCH = "state from argument does not match state restored from session"


class OIDCError(Exception):
    """A failed step (discovery, token endpoint, validation); ``str()`` is the reason."""


# ----------------------------------------------------------------------------- check
def check(conf: dict[str, Any], schema_type: str) -> None:
    if not conf["bearer_only"] and not conf.get("session"):
        raise ValueError('property "session.secret" is required when "bearer_only" is '
                         "false")
    if conf["bearer_only"]:
        secret_optional = bool(conf.get("public_key") or conf["use_jwks"]
                               or conf["introspection_endpoint_auth_method"]
                               == "private_key_jwt")
    else:
        secret_optional = bool(conf["token_endpoint_auth_method"] == "private_key_jwt"
                               or conf["use_pkce"])
    if not secret_optional and not conf.get("client_secret"):
        raise ValueError('property "client_secret" is required')
    for flat, owner in _RESERVED_FLAT:
        if flat in conf:
            raise ValueError(f'property "{flat}" is not allowed, use "{owner}" instead')
    for feature in ("par", "dpop"):
        if (conf.get(feature) or {}).get("enabled"):
            raise ValueError(f'property "{feature}.enabled": {feature} is not supported '
                             "by this gateway")
    if conf.get("claim_schema") is not None:
        try:
            fastjsonschema.compile(conf["claim_schema"])
        except Exception as e:  # noqa: BLE001 - any schema compile failure
            raise ValueError(f"check claim_schema failed: {e}") from None
    if conf.get("public_key"):
        _load_public_key(conf["public_key"])
    if conf.get("client_rsa_private_key"):
        try:
            serialization.load_pem_private_key(conf["client_rsa_private_key"].encode(), None)
        except (ValueError, TypeError) as e:
            raise ValueError(f'property "client_rsa_private_key" is not a valid key: {e}') \
                from None
    for field in ("discovery", "introspection_endpoint"):
        v = conf.get(field)
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f'property "{field}" validation failed: must be an http:// or '
                             "https:// URL")


def _load_public_key(pem: str) -> Any:
    data = pem.strip().encode()
    try:
        if b"CERTIFICATE" in data:
            from cryptography import x509
            return x509.load_pem_x509_certificate(data).public_key()
        return serialization.load_pem_public_key(data)
    except ValueError as e:
        raise ValueError(f'property "public_key" is not a valid public key: {e}') from None


# ----------------------------------------------------------------------------- prepare
class _Conf:
    """A configuration compiled once per snapshot."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.client_id: str = conf["client_id"]
        self.client_secret: str | None = conf.get("client_secret")
        self.discovery: str = conf["discovery"]
        self.scope: str = conf["scope"]
        self.verify: bool = conf["ssl_verify"]
        t = conf["timeout"]
        if t >= 1000 and t % 1000 == 0:      # stored in milliseconds by old versions
            t //= 1000
        self.timeout = float(t)
        self.introspection_endpoint: str | None = conf.get("introspection_endpoint")
        self.introspection_auth: str = conf["introspection_endpoint_auth_method"]
        ta = conf["token_endpoint_auth_method"]
        if ta not in _AUTH_METHODS or (ta == "private_key_jwt" and not
                                       conf.get("client_rsa_private_key")):
            ta = "client_secret_basic"          # lua-resty-openidc's fallback
        self.token_auth: str = ta
        self.bearer_only: bool = conf["bearer_only"]
        self.realm: str = conf["realm"]
        self.logout_path: str = conf["logout_path"]
        self.redirect_uri: str | None = conf.get("redirect_uri")
        self.redirect_path = _path_of(self.redirect_uri) if self.redirect_uri else None
        self.post_logout_redirect_uri: str | None = conf.get("post_logout_redirect_uri")
        self.unauth_action: str = conf["unauth_action"]
        self.public_key = _load_public_key(conf["public_key"]) if conf.get("public_key") \
            else None
        self.use_jwks: bool = conf["use_jwks"]
        self.expected_alg: str | None = conf.get("token_signing_alg_values_expected")
        self.use_pkce: bool = conf["use_pkce"]
        self.use_nonce: bool = conf["use_nonce"]
        self.set_access_token_header: bool = conf["set_access_token_header"]
        self.access_token_in_authorization_header: bool = \
            conf["access_token_in_authorization_header"]
        self.set_id_token_header: bool = conf["set_id_token_header"]
        self.set_raw_id_token_header: bool = conf["set_raw_id_token_header"]
        self.set_userinfo_header: bool = conf["set_userinfo_header"]
        self.set_refresh_token_header: bool = conf["set_refresh_token_header"]
        self.authorization_params: dict[str, Any] = conf.get("authorization_params") or {}
        self.client_key = None
        if conf.get("client_rsa_private_key"):
            self.client_key = serialization.load_pem_private_key(
                conf["client_rsa_private_key"].encode(), None)
        self.client_key_id: str | None = conf.get("client_rsa_private_key_id")
        self.assertion_ttl: int = conf["client_jwt_assertion_expires_in"]
        self.assertion_alg: str | None = conf.get("client_jwt_assertion_alg")
        self.assertion_aud: str | None = conf.get("client_jwt_assertion_audience")
        self.renew: bool = conf["renew_access_token_on_expiry"]
        self.access_token_expires_in: int | None = conf.get("access_token_expires_in")
        self.refresh_session_interval: int | None = conf.get("refresh_session_interval")
        self.iat_slack: int = conf["iat_slack"]
        self.leeway: int = conf["access_token_expires_leeway"]
        self.force_reauthorize: bool = conf["force_reauthorize"]
        self.revoke_on_logout: bool = conf["revoke_tokens_on_logout"]
        self.jwk_ttl: int = conf["jwk_expires_in"]
        self.introspection_interval: int = conf["introspection_interval"]
        self.introspection_expiry_claim: str = conf.get("introspection_expiry_claim") or "exp"
        self.addon_headers: tuple[str, ...] = tuple(conf.get("introspection_addon_headers")
                                                    or ())
        self.required_scopes: list[str] | None = conf.get("required_scopes")
        cv = conf.get("claim_validator") or {}
        self.valid_issuers: list[str] | None = (cv.get("issuer") or {}).get("valid_issuers")
        aud = cv.get("audience") or {}
        self.aud_claim: str = aud.get("claim", "aud")
        self.aud_required: bool = aud.get("required", False)
        self.aud_match_client: bool = aud.get("match_with_client_id", False)
        self.claim_schema = fastjsonschema.compile(conf["claim_schema"]) \
            if conf.get("claim_schema") is not None else None
        self.bearer_mode = bool(self.bearer_only or self.introspection_endpoint
                                or self.public_key is not None or self.use_jwks)
        sess = conf.get("session")
        self.sessions = _Sessions(sess) if sess else None
        if conf.get("proxy_opts"):
            pdk.log.warning("openid-connect: proxy_opts is not supported; the identity "
                            "provider is called directly")


def prepare(conf: dict[str, Any]) -> _Conf:
    return _Conf(conf)


def _path_of(uri: str) -> str:
    """lua-resty-openidc's openidc_get_path: the path of a URL or of a path?query."""
    uri = uri.split("?", 1)[0]
    if "//" in uri:
        rest = uri.split("//", 1)[1]
        i = rest.find("/")
        return rest[i:] if i >= 0 else uri
    return uri


# ----------------------------------------------------------------------------- sessions
_CHUNK = 4000
_MAX_CHUNKS = 4


class _Sessions:
    """Cookie sessions: JSON, compressed, sealed with AES-256-GCM (the cookie name as
    associated data) under a key derived from ``session.secret``."""

    def __init__(self, conf: dict[str, Any]) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"pylon openid-connect session v1").derive(conf["secret"].encode())
        self.aead = AESGCM(key)
        self.name: str = conf.get("cookie_name") or "session"
        self.path: str = conf.get("cookie_path") or "/"
        self.domain: str | None = conf.get("cookie_domain")
        same = conf.get("cookie_same_site", "Lax")
        self.same_site = None if same == "Default" else same
        self.secure = bool(conf.get("cookie_secure")) or same == "None"
        self.http_only = conf.get("cookie_http_only", True)
        absolute = conf.get("absolute_timeout")
        if absolute is None:
            absolute = (conf.get("cookie") or {}).get("lifetime")
        self.absolute = 86400 if absolute is None else absolute
        idle = conf.get("idling_timeout", 900)
        rolling = conf.get("rolling_timeout", 3600)
        windows = [w for w in (idle, rolling) if w and w > 0]
        self.window = min(windows) if windows else 0
        self.touch = min(60, self.window // 4) if self.window else 0
        self.aad = self.name.encode()
        if conf.get("storage") == "redis":
            pdk.log.warning("openid-connect: session.storage redis is not supported; "
                            "sessions are kept in cookies")

    def _attrs(self) -> str:
        a = f"; Path={self.path}"
        if self.domain:
            a += f"; Domain={self.domain}"
        if self.same_site:
            a += f"; SameSite={self.same_site}"
        if self.secure:
            a += "; Secure"
        if self.http_only:
            a += "; HttpOnly"
        return a

    def load(self, ctx: pdk.Context) -> dict[str, Any] | None:
        """The session of the request, or None (absent, tampered, expired)."""
        first = ctx.cookie(self.name)
        if not first:
            return None
        if "." in first:
            n_s, _, part = first.partition(".")
            if not n_s.isdigit() or not 2 <= int(n_s) <= _MAX_CHUNKS:
                return None
            parts = [part]
            for i in range(2, int(n_s) + 1):
                p = ctx.cookie(f"{self.name}_{i}")
                if not p:
                    return None
                parts.append(p)
            token = "".join(parts)
        else:
            token = first
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            if len(raw) < 13 + 16:
                return None
            plain = self.aead.decrypt(raw[:12], raw[12:], self.aad)
            data = json.loads(zlib.decompress(plain))
        except (ValueError, InvalidTag, zlib.error):
            return None
        if not isinstance(data, dict):
            return None
        now = time.time()
        if self.absolute and now - data.get("ct", 0) > self.absolute:
            return None
        if self.window and now - data.get("t", 0) > self.window:
            return None
        return data

    def needs_touch(self, data: dict[str, Any]) -> bool:
        return bool(self.touch) and time.time() - data.get("t", 0) > self.touch

    def cookies(self, data: dict[str, Any], ctx: pdk.Context) -> list[str]:
        """Set-Cookie values that store ``data`` (and expire chunks no longer used)."""
        now = time.time()
        data["t"] = round(now, 1)
        data.setdefault("ct", round(now, 1))
        plain = zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 6)
        nonce = os.urandom(12)
        token = base64.urlsafe_b64encode(nonce + self.aead.encrypt(nonce, plain, self.aad)) \
            .rstrip(b"=").decode()
        attrs = self._attrs()
        if len(token) <= _CHUNK:
            out = [f"{self.name}={token}{attrs}"]
            used = 1
        else:
            parts = [token[i:i + _CHUNK] for i in range(0, len(token), _CHUNK)]
            if len(parts) > _MAX_CHUNKS:
                raise OIDCError(f"session too large ({len(token)} bytes)")
            out = [f"{self.name}={len(parts)}.{parts[0]}{attrs}"]
            out += [f"{self.name}_{i}={p}{attrs}" for i, p in enumerate(parts[1:], 2)]
            used = len(parts)
        for i in range(used + 1, _MAX_CHUNKS + 1):
            if ctx.cookie(f"{self.name}_{i}") is not None:
                out.append(self._expired(f"{self.name}_{i}"))
        return out

    def _expired(self, cname: str) -> str:
        return f"{cname}=; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0{self._attrs()}"

    def destroy(self, ctx: pdk.Context) -> list[str]:
        out = []
        if ctx.cookie(self.name) is not None:
            out.append(self._expired(self.name))
        for i in range(2, _MAX_CHUNKS + 1):
            if ctx.cookie(f"{self.name}_{i}") is not None:
                out.append(self._expired(f"{self.name}_{i}"))
        return out


# ----------------------------------------------------------------------------- provider
_DISCOVERY_TTL = 24 * 3600
_JWKS_FORCE_INTERVAL = 1.0
_INTROSPECTION_MAX = 10000
_discovery: dict[str, tuple[float, dict[str, Any]]] = {}
#: url -> {"exp", "forced" (last refetch for an unknown kid), "keys", "parsed"}
_jwks: dict[str, dict[str, Any]] = {}
_inflight: dict[tuple[str, str], asyncio.Future[Any]] = {}
_introspection: dict[str, tuple[float, dict[str, Any]]] = {}


async def _single(kind: str, key: str, make: Any) -> Any:
    """One fetch per (kind, key) at a time; concurrent callers share its result (a caller
    that goes away does not cancel it for the others)."""
    k = (kind, key)
    task = _inflight.get(k)
    if task is None:
        task = asyncio.ensure_future(make())
        _inflight[k] = task

        def done(t: asyncio.Future[Any]) -> None:
            if _inflight.get(k) is t:
                del _inflight[k]
            if not t.cancelled():
                t.exception()                   # retrieved: no "never retrieved" warning
        task.add_done_callback(done)
    return await asyncio.shield(task)


async def _get_json(c: _Conf, url: str, what: str, headers: Any = None) -> Any:
    try:
        res = await http.request("GET", url, headers=headers, timeout=c.timeout,
                                 verify=c.verify)
    except http.HTTPError as e:
        raise OIDCError(f"accessing {what} url ({url}) failed: {e}") from None
    if res.status != 200:
        raise OIDCError(f"response indicates failure, status={res.status}")
    try:
        return res.json()
    except ValueError:
        raise OIDCError(f"could not decode JSON from {what} data") from None


async def discover(c: _Conf) -> dict[str, Any]:
    hit = _discovery.get(c.discovery)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]

    async def fetch() -> dict[str, Any]:
        doc = await _get_json(c, c.discovery, "discovery")
        if not isinstance(doc, dict):
            raise OIDCError("could not decode JSON from Discovery data")
        _discovery[c.discovery] = (time.monotonic() + _DISCOVERY_TTL, doc)
        return doc
    return await _single("discovery", c.discovery, fetch)


async def _jwks_keys(c: _Conf, url: str, force: bool) -> list[dict[str, Any]]:
    ent = _jwks.get(url)
    now = time.monotonic()
    if ent is not None and not force and ent["exp"] > now:
        return ent["keys"]
    if force and ent is not None:
        if now - ent["forced"] < _JWKS_FORCE_INTERVAL:
            return ent["keys"]
        ent["forced"] = now                 # unknown kid: at most one refetch a second

    async def fetch() -> list[dict[str, Any]]:
        doc = await _get_json(c, url, "jwks")
        keys = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(keys, list):
            raise OIDCError("JWKS without keys")
        keys = [k for k in keys if isinstance(k, dict)]
        t = time.monotonic()
        old = _jwks.get(url)
        _jwks[url] = {"exp": t + c.jwk_ttl, "forced": old["forced"] if old else 0.0,
                      "keys": keys, "parsed": {}}
        return keys
    return await _single("jwks", url, fetch)


def _pick(keys: list[dict[str, Any]], kid: str | None) -> dict[str, Any] | None:
    usable = [k for k in keys if k.get("kty") in ("RSA", "EC", "OKP")
              and k.get("use") in (None, "sig")]
    if kid is None:
        if len(usable) == 1:
            return usable[0]
        raise OIDCError("JWT doesn't specify kid but the keystore contains multiple keys")
    for k in usable:
        if k.get("kid") == kid:
            return k
    return None


async def _jwk_for(c: _Conf, kid: str | None) -> Any:
    doc = await discover(c)
    url = doc.get("jwks_uri")
    if not isinstance(url, str) or not url:
        raise OIDCError("opts.discovery.jwks_uri is not present or not a string")
    jwk = _pick(await _jwks_keys(c, url, False), kid)
    if jwk is None:
        jwk = _pick(await _jwks_keys(c, url, True), kid)     # rotated keys: refetch once
    if jwk is None:
        raise OIDCError(f"key with id {kid} not found")
    parsed = _jwks.get(url, {}).get("parsed", {})
    pk = id(jwk)
    key = parsed.get(pk)
    if key is None:
        try:
            key = jwt.PyJWK(jwk).key
        except (jwt.PyJWTError, ValueError, KeyError, TypeError) as e:
            raise OIDCError(f"unusable key {kid}: {e}") from None
        parsed[pk] = key
    return key


def _b64json(seg: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


def _http_date(ts: Any) -> str:
    try:
        return email.utils.formatdate(float(ts), usegmt=True)
    except (TypeError, ValueError, OverflowError):
        return str(ts)


async def verify_jwt(c: _Conf, token: str, expected_algs: Any, *, id_token: bool = False,
                     valid_issuers: list[str] | None = None,
                     leeway: int = 0) -> dict[str, Any]:
    """Signature (public_key, the provider's JWKS, or client_secret for an HS* ID token),
    then ``exp``/``nbf`` (and ``iss`` when ``valid_issuers``).  The claims, or OIDCError."""
    parts = token.split(".")
    if len(parts) != 3:
        raise OIDCError("invalid jwt: invalid jwt string")
    try:
        header = _b64json(parts[0])
        if not isinstance(header, dict):
            raise TypeError("header")
    except (ValueError, TypeError):
        raise OIDCError("invalid jwt: invalid header") from None
    alg = header.get("alg")
    if alg == "none" or not parts[2]:
        raise OIDCError('token uses "none" alg but accept_none_alg is not enabled')
    if expected_algs is not None:
        ok = alg == expected_algs if isinstance(expected_algs, str) else alg in expected_algs
        if not ok:
            raise OIDCError(f'token is signed by unexpected algorithm "{alg}"')
    if alg in _HMAC_ALGS and id_token and c.client_secret:
        key: Any = c.client_secret.encode()
    elif alg in _ASYM_ALGS:
        kid = header.get("kid")
        key = c.public_key if c.public_key is not None else \
            await _jwk_for(c, kid if isinstance(kid, str) else None)
    else:
        raise OIDCError(f'token is signed using algorithm "{alg}" which is not supported')
    try:
        out = _JWS.decode_complete(token, key, algorithms=[alg])
        claims = json.loads(out["payload"])
    except (jwt.PyJWTError, ValueError, TypeError) as e:
        raise OIDCError(f"jwt signature verification failed: {e}") from None
    if not isinstance(claims, dict):
        raise OIDCError("invalid jwt: payload is not an object")
    now = time.time()
    exp = claims.get("exp")
    if exp is not None:
        if not isinstance(exp, (int, float)):
            raise OIDCError("jwt signature verification failed: 'exp' is malformed")
        if exp + leeway <= now:
            raise OIDCError(f"jwt signature verification failed: 'exp' claim expired at "
                            f"{_http_date(exp)}")
    nbf = claims.get("nbf")
    if nbf is not None:
        if not isinstance(nbf, (int, float)):
            raise OIDCError("jwt signature verification failed: 'nbf' is malformed")
        if nbf - leeway > now:
            raise OIDCError(f"jwt signature verification failed: 'nbf' claim not valid "
                            f"until {_http_date(nbf)}")
    if valid_issuers is not None and claims.get("iss") not in valid_issuers:
        raise OIDCError("jwt signature verification failed: 'iss' claim does not match "
                        "the valid issuers")
    return claims


# ----------------------------------------------------------------------------- endpoints
def _client_auth(c: _Conf, method: str, endpoint: str, body: dict[str, str],
                 headers: dict[str, str]) -> None:
    if method == "client_secret_basic":
        from urllib.parse import quote
        cred = quote(c.client_id, safe="") + ":" + quote(c.client_secret or "", safe="")
        headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
    elif method == "client_secret_post":
        body["client_id"] = c.client_id
        if c.client_secret:
            body["client_secret"] = c.client_secret
    elif method in ("private_key_jwt", "client_secret_jwt"):
        now = int(time.time())
        claims = {"iss": c.client_id, "sub": c.client_id,
                  "aud": c.assertion_aud or endpoint, "jti": secrets.token_hex(16),
                  "exp": now + c.assertion_ttl, "iat": now}
        if method == "private_key_jwt":
            if c.client_key is None:
                raise OIDCError("Can't use private_key_jwt without a key.")
            alg = c.assertion_alg or "RS256"
            hdr = {"kid": c.client_key_id} if c.client_key_id else None
            assertion = jwt.encode(claims, c.client_key,  # type: ignore[arg-type]  # an RSA/EC key
                                   algorithm=alg, headers=hdr)
        else:
            if not c.client_secret:
                raise OIDCError("Can't use client_secret_jwt without a key.")
            assertion = jwt.encode(claims, c.client_secret, algorithm=c.assertion_alg
                                   or "HS256")
        body["client_id"] = c.client_id
        body["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:" \
                                        "jwt-bearer"
        body["client_assertion"] = assertion


async def call_token_endpoint(c: _Conf, endpoint: str | None, body: dict[str, str],
                              auth: str, what: str = "token",
                              extra_headers: dict[str, str] | None = None,
                              want_json: bool = True) -> Any:
    if not endpoint:
        raise OIDCError(f"no endpoint URI for {what}")
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if extra_headers:
        headers.update(extra_headers)
    _client_auth(c, auth, endpoint, body, headers)
    try:
        res = await http.request("POST", endpoint, headers=headers, body=urlencode(body),
                                 timeout=c.timeout, verify=c.verify)
    except http.HTTPError as e:
        raise OIDCError(f"accessing {what} endpoint ({endpoint}) failed: {e}") from None
    if res.status != 200:
        raise OIDCError(f"response indicates failure, status={res.status}")
    if not want_json:
        return None
    try:
        data = res.json()
    except ValueError:
        raise OIDCError("JSON decoding failed") from None
    if not isinstance(data, dict):
        raise OIDCError("JSON decoding failed")
    return data


async def introspect(c: _Conf, ctx: pdk.Context, token: str) -> dict[str, Any]:
    endpoint = c.introspection_endpoint
    if not endpoint:
        try:
            endpoint = (await discover(c)).get("introspection_endpoint")
        except OIDCError as e:
            raise OIDCError(f"opts.introspection_endpoint not said and {e}") from None
    ckey = hashlib.sha256(f"{endpoint}\0{c.client_id}\0{token}".encode()).hexdigest()
    hit = _introspection.get(ckey)
    if hit is not None:
        if hit[0] > time.monotonic():
            return hit[1]
        _introspection.pop(ckey, None)
    extra = {}
    for h in c.addon_headers:
        v = ctx.header(h)
        if v is not None:
            extra[h] = v
    data = await call_token_endpoint(c, endpoint, {"token": token}, c.introspection_auth,
                                     "introspection", extra)
    if data.get("active") is not True:
        raise OIDCError("invalid token")
    exp = data.get(c.introspection_expiry_claim)
    if isinstance(exp, (int, float)) and not isinstance(exp, bool):
        ttl = exp - time.time() if c.introspection_expiry_claim == "exp" else exp
        if c.introspection_interval > 0:
            ttl = min(ttl, c.introspection_interval)
        if ttl > 0:
            if len(_introspection) >= _INTROSPECTION_MAX:
                _introspection.clear()
            _introspection[ckey] = (time.monotonic() + ttl, data)
    return data


# ----------------------------------------------------------------------------- helpers
def _b64(obj: Any) -> str:
    return base64.b64encode(json.dumps(obj, separators=(",", ":"),
                                       ensure_ascii=False).encode()).decode()


def _desc(err: str) -> str:
    """An error made safe for a quoted header parameter."""
    return "".join(ch for ch in err if 32 <= ord(ch) < 127 and ch not in '"\\')[:300]


def _invalid_token(c: _Conf, err: str) -> Any:
    return 401, None, {"WWW-Authenticate": f'Bearer realm="{c.realm}", error="invalid_token",'
                                           f' error_description="{_desc(err)}"'}


def _set_access_token(c: _Conf, ctx: pdk.Context, token: str | None) -> None:
    if token and c.set_access_token_header:
        if c.access_token_in_authorization_header:
            ctx.set_header("Authorization", "Bearer " + token)
        else:
            ctx.set_header("X-Access-Token", token)


def _scopes_reply(c: _Conf, granted: Any) -> Any:
    have = set(granted.split()) if isinstance(granted, str) else set()
    if all(s in have for s in c.required_scopes or ()):
        return None
    pdk.log.error("OIDC introspection failed: required scopes not present")
    return 403, {"error": "required scopes " + ", ".join(c.required_scopes or ()) +
                 " not present"}


def _bearer_token(ctx: pdk.Context, client_xat: str | None) -> tuple[bool, str | None, Any]:
    auth = ctx.header("Authorization")
    if auth is None:
        if client_xat is None:
            return False, None, None
        return True, client_xat, None
    parts = auth.split(" ", 1)
    if len(parts) < 2:
        return False, None, 400
    if parts[0].lower() == "bearer":
        return True, parts[1], None
    return False, None, None


def _full_redirect_uri(ctx: pdk.Context, path_or_url: str) -> str | None:
    if not path_or_url.startswith("/"):
        return path_or_url
    scheme = _forwarded(ctx, "proto") or _first(ctx.header("X-Forwarded-Proto")) \
        or ctx.scheme
    host = _forwarded(ctx, "host") or _first(ctx.header("X-Forwarded-Host")) \
        or ctx.header("Host")
    if not host:
        return None
    return f"{scheme}://{host}{path_or_url}"


def _first(v: str | None) -> str | None:
    if not v:
        return None
    return v.split(",", 1)[0].strip() or None


def _forwarded(ctx: pdk.Context, param: str) -> str | None:
    fwd = ctx.header("Forwarded")
    if not fwd:
        return None
    for pv in fwd.split(",", 1)[0].split(";"):
        k, _, v = pv.partition("=")
        if k.strip().lower() == param:
            v = v.strip()
            return v[1:-1] if v.startswith('"') and v.endswith('"') else v or None
    return None


def _combine(uri: str, params: dict[str, Any]) -> str:
    if not params:
        return uri
    return uri + ("&" if "?" in uri else "?") + urlencode(params)


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()) \
        .rstrip(b"=").decode()


def _jwt_claim(token: str | None, claim: str) -> Any:
    """A claim of a JWT the provider handed us directly (no signature check needed)."""
    if not token or token.count(".") != 2:
        return None
    try:
        payload = _b64json(token.split(".")[1])
    except (ValueError, TypeError):
        return None
    return payload.get(claim) if isinstance(payload, dict) else None


# ----------------------------------------------------------------------------- the hook
async def rewrite(c: _Conf, ctx: pdk.Context) -> Any:
    client_xat = ctx.header("X-Access-Token")
    for h in _OUT_HEADERS:
        if ctx.header(h) is not None:
            ctx.remove_header(h)

    if c.bearer_mode:
        has_token, token, bad = _bearer_token(ctx, client_xat)
        if bad is not None:
            pdk.log.error("OIDC introspection failed: Invalid Authorization header format.")
            return bad
        if has_token:
            return await _bearer(c, ctx, token or "")
        if c.bearer_only:
            pdk.log.error("OIDC introspection failed: No bearer token found in request.")
            return 401, None, {"WWW-Authenticate": f'Bearer realm="{c.realm}"'}
    return await _session_flow(c, ctx)


async def _bearer(c: _Conf, ctx: pdk.Context, token: str) -> Any:
    try:
        if c.public_key is not None or c.use_jwks:
            issuers = c.valid_issuers
            if issuers is None:
                try:
                    issuer = (await discover(c)).get("issuer")
                    issuers = [issuer] if issuer else None
                except OIDCError as e:
                    pdk.log.warning("OIDC access discovery url failed : %s", e)
            claims = await verify_jwt(c, token, c.expected_alg, valid_issuers=issuers)
        else:
            claims = await introspect(c, ctx, token)
    except OIDCError as e:
        pdk.log.error("OIDC introspection failed: %s", e)
        return _invalid_token(c, str(e))

    if c.required_scopes:
        r = _scopes_reply(c, claims.get("scope"))
        if r is not None:
            return r
    aud = claims.get(c.aud_claim)
    if c.aud_required and not aud:
        pdk.log.error("OIDC introspection failed: required audience (%s) not present",
                      c.aud_claim)
        return 403, {"error": "required audience claim not present"}
    if c.aud_match_client and aud is not None:
        ok = c.client_id in aud if isinstance(aud, list) else aud == c.client_id
        if not ok:
            pdk.log.error("OIDC introspection failed: audience does not match the client id")
            return 403, {"error": "mismatched audience"}
    if c.claim_schema is not None:
        try:
            c.claim_schema(claims)
        except fastjsonschema.JsonSchemaValueException as e:
            pdk.log.error("OIDC claim validation failed: %s", e.message)
            return _invalid_token(c, e.message)
    _set_access_token(c, ctx, token)
    if c.set_userinfo_header:
        ctx.set_header("X-Userinfo", _b64(claims))
    return None


def _local_target(raw: str) -> str:
    """The request target as a local path?query: never "//host/..." (or an absolute-form
    target), which a browser would follow off-site when it comes back as a Location."""
    path, sep, query = raw.partition("?")
    if not path.startswith("/"):
        path = _path_of(path)
        if not path.startswith("/"):
            path = "/"
    if path.startswith(("//", "/\\")):
        path = "/" + path.lstrip("/\\")
    return path + sep + query


def _redirect_path(c: _Conf, ctx: pdk.Context) -> tuple[str, str]:
    """(the callback path to compare, the redirect_uri as configured or derived)."""
    if c.redirect_uri is not None:
        return c.redirect_path or "", c.redirect_uri
    uri = ctx.uri
    if uri.endswith(_REDIRECT_SUFFIX):
        ru = uri
    else:
        ru = (uri.removesuffix("/")) + _REDIRECT_SUFFIX
    return ru, ru


async def _session_flow(c: _Conf, ctx: pdk.Context) -> Any:
    sessions = c.sessions
    if sessions is None:          # bearer_only without a token never gets here
        return 401
    request_uri = _local_target(ctx.var("request_uri") or ctx.uri)
    path = _path_of(request_uri)
    cb_path, redirect_uri = _redirect_path(c, ctx)
    sess = sessions.load(ctx)
    try:
        if path == cb_path:
            if sess is None:
                pdk.log.error("OIDC authentication failed: request to the redirect_uri path "
                              "but there's no session state found")
                return 500
            return await _callback(c, ctx, sess, redirect_uri)
        if path == c.logout_path:
            return await _logout(c, ctx, sess)
        return await _authenticated(c, ctx, sess, request_uri, redirect_uri)
    except OIDCError as e:
        pdk.log.error("OIDC authentication failed: %s", e)
        return 500


async def _authenticated(c: _Conf, ctx: pdk.Context, sess: dict[str, Any] | None,
                         request_uri: str, redirect_uri: str) -> Any:
    sessions = c.sessions
    assert sessions is not None
    authenticated = bool(sess and sess.get("auth"))
    save = False
    token_expired = False
    access_token = None
    if sess is not None and authenticated:
        access_token = sess.get("at")
        if access_token is not None and time.time() >= sess.get("ate", 0):
            access_token = None
            if c.renew and sess.get("rt"):
                try:
                    await _refresh(c, sess)
                    access_token = sess.get("at")
                    save = True
                except OIDCError as e:
                    pdk.log.error("lost access token:%s", e)
            if access_token is None:
                token_expired = True

    if sess is None or not authenticated or c.force_reauthorize or \
            (c.renew and token_expired):
        if c.unauth_action == "pass":
            return None
        if c.unauth_action == "deny":
            return 401
        return await _authorize(c, ctx, sess, request_uri, redirect_uri, None)

    if c.refresh_session_interval is not None and \
            sess.get("la", 0) + c.refresh_session_interval < time.time():
        return await _authorize(c, ctx, sess, request_uri, redirect_uri, "none")

    if c.required_scopes:
        r = _scopes_reply(c, sess.get("sc"))
        if r is not None:
            return r
    if c.claim_schema is not None:
        try:
            c.claim_schema({"user": sess.get("u"), "access_token": access_token,
                            "id_token": sess.get("idt")})
        except fastjsonschema.JsonSchemaValueException as e:
            pdk.log.error("OIDC claim validation failed: %s", e.message)
            return _invalid_token(c, e.message)

    _set_access_token(c, ctx, access_token)
    if sess.get("idt") is not None and c.set_id_token_header:
        ctx.set_header("X-ID-Token", _b64(sess["idt"]))
    if sess.get("u") is not None and c.set_userinfo_header:
        ctx.set_header("X-Userinfo", _b64(sess["u"]))
    if sess.get("rt") and c.set_refresh_token_header:
        ctx.set_header("X-Refresh-Token", sess["rt"])
    if sess.get("eidt") and c.set_raw_id_token_header:
        ctx.set_header("X-Raw-ID-Token", sess["eidt"])
    if sess.pop("r", None) is not None:
        save = True                           # a successful login resets the restart budget
    if save or sessions.needs_touch(sess):
        for v in sessions.cookies(sess, ctx):
            ctx.add_resp_header("Set-Cookie", v)
    return None


async def _authorize(c: _Conf, ctx: pdk.Context, old: dict[str, Any] | None,
                     request_uri: str, redirect_uri: str, prompt: str | None) -> Any:
    sessions = c.sessions
    assert sessions is not None
    doc = await discover(c)
    endpoint = doc.get("authorization_endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise OIDCError("no authorization_endpoint in the discovery document")
    full = _full_redirect_uri(ctx, redirect_uri)
    if full is None:
        return 400
    state = secrets.token_hex(16)
    params: dict[str, Any] = {"client_id": c.client_id, "response_type": "code",
                              "scope": c.scope, "redirect_uri": full, "state": state}
    sess: dict[str, Any] = {"st": state, "ou": request_uri, "la": int(time.time())}
    if c.use_nonce:
        sess["n"] = params["nonce"] = secrets.token_hex(16)
    if prompt:
        params["prompt"] = prompt
    if c.use_pkce:
        verifier = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
        sess["cv"] = verifier
        params["code_challenge_method"] = "S256"
        params["code_challenge"] = _s256(verifier)
    for k, v in c.authorization_params.items():
        params[k] = v if isinstance(v, str) else json.dumps(v) if isinstance(v, (dict, list)) \
            else str(v).lower() if isinstance(v, bool) else str(v)
    if old is not None and old.get("r"):
        sess["r"] = old["r"]
    cookies = sessions.cookies(sess, ctx)
    return 302, None, [("Location", _combine(endpoint, params)),
                       ("Cache-Control", "no-cache, no-store, max-age=0"),
                       *(("Set-Cookie", v) for v in cookies)]


async def _callback(c: _Conf, ctx: pdk.Context, sess: dict[str, Any],
                    redirect_uri: str) -> Any:
    sessions = c.sessions
    assert sessions is not None
    args = ctx.args()
    code, state = args.get("code"), args.get("state")
    if not code or not state:
        if args.get("error") == "temporarily_unavailable" and state and \
                state == sess.get("st"):
            return _restart(c, ctx, sess, "authorization callback reported a temporarily "
                                          "unavailable identity provider")
        pdk.log.error("OIDC authentication failed: unhandled request to the redirect_uri")
        return 500
    if state != sess.get("st"):
        return _restart(c, ctx, sess, _STATE_MISMATCH)
    doc = await discover(c)
    if args.get("iss") and args.get("iss") != doc.get("issuer"):
        raise OIDCError("iss from argument does not match expected issuer")
    if args.get("client_id") and args.get("client_id") != c.client_id:
        raise OIDCError("client_id from argument does not match expected client_id")
    full = _full_redirect_uri(ctx, redirect_uri)
    if full is None:
        return 400
    body = {"grant_type": "authorization_code", "code": code, "redirect_uri": full,
            "state": state}
    if sess.get("cv"):
        body["code_verifier"] = sess["cv"]
    now = time.time()
    tokens = await call_token_endpoint(c, doc.get("token_endpoint"), body, c.token_auth)
    raw_id = tokens.get("id_token")
    if not isinstance(raw_id, str):
        raise OIDCError("no id_token in the token endpoint response")
    id_token = await _validate_id_token(c, doc, raw_id, sess.get("n"))
    new: dict[str, Any] = {"auth": 1, "idt": id_token, "eidt": raw_id,
                           "ou": sess.get("ou") or "/", "la": int(now)}
    at = tokens.get("access_token")
    if isinstance(at, str):
        new["at"] = at
        new["ate"] = now + _expires_in(c, tokens.get("expires_in"))
        if isinstance(tokens.get("refresh_token"), str):
            new["rt"] = tokens["refresh_token"]
        user = await _userinfo(c, doc, at)
        if user is not None:
            if user.get("sub") != id_token.get("sub"):
                pdk.log.error('OIDC: "sub" claim in id_token is not equal to the "sub" claim '
                              "returned from the userinfo endpoint")
            else:
                new["u"] = user
    scope = _jwt_claim(at if isinstance(at, str) else None, "scope")
    if not isinstance(scope, str):
        scope = id_token.get("scope")
    if isinstance(scope, str):
        new["sc"] = scope
    cookies = sessions.cookies(new, ctx)
    return 302, None, [("Location", new["ou"]), *(("Set-Cookie", v) for v in cookies)]


def _restart(c: _Conf, ctx: pdk.Context, sess: dict[str, Any], reason: str) -> Any:
    """A stale or replayed callback: send the browser back where it started, a few times."""
    sessions = c.sessions
    assert sessions is not None
    url = sess.get("ou")
    restarts = int(sess.get("r") or 0)
    if url and ctx.method == "GET" and restarts < _MAX_AUTH_FLOW_RESTARTS:
        sess["r"] = restarts + 1
        pdk.log.warning("OIDC %s, restarting the authentication flow", reason)
        cookies = sessions.cookies(sess, ctx)
        return 302, None, [("Location", url), *(("Set-Cookie", v) for v in cookies)]
    pdk.log.error("OIDC authentication failed: %s (giving up after %d restarts of the "
                  "authentication flow)", reason, restarts)
    return 500


def _expires_in(c: _Conf, expires_in: Any) -> float:
    if not isinstance(expires_in, (int, float)) or isinstance(expires_in, bool):
        expires_in = c.access_token_expires_in or 3600
    return float(expires_in) - 1 - c.leeway


async def _validate_id_token(c: _Conf, doc: dict[str, Any], raw: str,
                             nonce: str | None) -> dict[str, Any]:
    algs = doc.get("id_token_signing_alg_values_supported")
    try:
        claims = await verify_jwt(c, raw, algs if isinstance(algs, (list, str)) else None,
                                  id_token=True, leeway=c.iat_slack)
    except OIDCError as e:
        pdk.log.error("id_token signature verification failed: %s", e)
        raise
    now = time.time()
    problem = None
    aud = claims.get("aud")
    if doc.get("issuer") != claims.get("iss"):
        problem = "issuer in id_token is not equal to the issuer from the discovery document"
    elif not claims.get("sub"):
        problem = 'no "sub" claim found in id_token'
    elif nonce and nonce != claims.get("nonce"):
        problem = "nonce in id_token is not equal to the nonce that was sent in the request"
    elif not isinstance(claims.get("iat"), (int, float)):
        problem = 'no "iat" claim found in id_token'
    elif claims["iat"] > now + c.iat_slack:
        problem = "id_token not yet valid"
    elif not isinstance(claims.get("exp"), (int, float)):
        problem = 'no "exp" claim found in id_token'
    elif claims["exp"] + c.iat_slack < now:
        problem = "token expired"
    elif not aud:
        problem = 'no "aud" claim found in id_token'
    elif (c.client_id not in aud) if isinstance(aud, list) else aud != c.client_id:
        problem = "token audience does not match the client_id"
    if problem is not None:
        pdk.log.error("OIDC: %s", problem)
        raise OIDCError("id_token validation failed")
    return claims


async def _userinfo(c: _Conf, doc: dict[str, Any], access_token: str) -> Any:
    url = doc.get("userinfo_endpoint")
    if not isinstance(url, str) or not url:
        return None
    try:
        res = await http.request("GET", url, headers={"Authorization": "Bearer " +
                                                      access_token},
                                 timeout=c.timeout, verify=c.verify)
    except http.HTTPError as e:
        pdk.log.error("error calling userinfo endpoint: %s", e)
        return None
    if res.status != 200:
        pdk.log.error("error calling userinfo endpoint: status=%d", res.status)
        return None
    try:
        if "application/jwt" in (res.header("Content-Type") or "").lower():
            return await verify_jwt(c, res.body.decode().strip(), None, id_token=True)
        user = res.json()
    except (OIDCError, ValueError) as e:
        pdk.log.error("error calling userinfo endpoint: %s", e)
        return None
    return user if isinstance(user, dict) else None


async def _refresh(c: _Conf, sess: dict[str, Any]) -> None:
    doc = await discover(c)
    now = time.time()
    tokens = await call_token_endpoint(c, doc.get("token_endpoint"),
                                       {"grant_type": "refresh_token",
                                        "refresh_token": sess["rt"], "scope": c.scope},
                                       c.token_auth)
    if not isinstance(tokens.get("access_token"), str):
        raise OIDCError("no access_token in the refresh response")
    if isinstance(tokens.get("id_token"), str):
        sess["idt"] = await _validate_id_token(c, doc, tokens["id_token"], None)
        sess["eidt"] = tokens["id_token"]
    sess["at"] = tokens["access_token"]
    sess["ate"] = now + _expires_in(c, tokens.get("expires_in"))
    if isinstance(tokens.get("refresh_token"), str):
        sess["rt"] = tokens["refresh_token"]


async def _logout(c: _Conf, ctx: pdk.Context, sess: dict[str, Any] | None) -> Any:
    sessions = c.sessions
    assert sessions is not None
    try:
        doc = await discover(c)
    except OIDCError as e:
        pdk.log.error("OIDC access discovery url failed : %s", e)
        return 503
    cookies = sessions.destroy(ctx)
    sess = sess or {}
    if c.revoke_on_logout:
        endpoint = doc.get("revocation_endpoint")
        for hint, key in (("refresh_token", "rt"), ("access_token", "at")):
            if sess.get(key) and endpoint:
                try:
                    await call_token_endpoint(c, endpoint, {"token": sess[key],
                                                            "token_type_hint": hint},
                                              c.token_auth, "revocation", want_json=False)
                except OIDCError as e:
                    pdk.log.error("revocation of %s unsuccessful: %s", hint, e)
    end_session = doc.get("end_session_endpoint")
    after = c.post_logout_redirect_uri if not end_session else None
    headers: list[tuple[str, str]] = [("Set-Cookie", v) for v in cookies]
    if after or end_session:
        params: dict[str, str] = {}
        if not after and sess.get("eidt"):
            params["id_token_hint"] = sess["eidt"]
        if c.post_logout_redirect_uri:
            params["post_logout_redirect_uri"] = c.post_logout_redirect_uri
        target: str = after or end_session or ""      # one of them is set here
        return 302, None, [("Location", _combine(target, params)), *headers]
    return 200, b"<html><body>Logged Out</body></html>\n", \
        [("Content-Type", "text/html"), *headers]
