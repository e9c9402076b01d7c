"""hmac-auth: requests signed with a shared secret (APISIX ``hmac-auth``, the 3.x scheme).

The client sends (draft-cavage-http-signatures)::

    Date: Fri, 06 Sep 2024 06:41:29 GMT
    Authorization: Signature keyId="john-key",algorithm="hmac-sha256",
                   headers="@request-target date",signature="<base64>"

and signs, with the consumer's ``secret_key``, the string made of ``keyId`` and then one line
per name in ``headers``, in that order: ``@request-target`` is ``<METHOD> <request URI with
query>``, any other name is ``<name as written>: <header value>`` (a header the request does
not carry is left out); lines are joined with ``\\n`` and the string ends with ``\\n``.

Consumer / credential: ``key_id`` (unique, the lookup key) and ``secret_key`` (stored
encrypted).  Route / service: ``allowed_algorithms`` (default hmac-sha1, hmac-sha256,
hmac-sha512), ``clock_skew`` (default 300 s: ``Date`` -- or ``X-Date`` -- must be that close to
the gateway's clock), ``signed_headers`` (names that must be among the signed ones; default
``["date"]`` as in APISIX >= 3.16, so the ``Date`` checked against the clock is also bound
into the signature -- ``[]`` turns that off),
``validate_request_body`` (the ``Digest: SHA-256=<base64 of the body's SHA-256>`` header must
match the body; a body over ``max_req_body_size``, default 64 MiB, is refused with 413),
``hide_credentials`` (drop ``Authorization``) and ``anonymous_consumer``.

Answers (APISIX 3.x texts): no ``Authorization`` → 401 ``client request can't be validated:
missing Authorization header``; not a ``Signature`` → 401 ``client request can't be
validated: Authorization header does not start with 'Signature'``; any other failure (unknown
key, algorithm not allowed, clock skew, unsigned mandatory header, bad signature, bad digest)
→ 401 ``client request can't be validated`` with the reason in the log; a missing anonymous
consumer → 401 ``Invalid user authorization``.

The hook stays synchronous (no task) unless the body has to be checked: then, once everything
else has passed, ``rewrite`` returns a coroutine that awaits ``ctx.read_body()`` (the body is
still sent upstream).  Signatures and digests are compared in constant time.  Nothing is
changed on the request unless authentication succeeds.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import hmac
import re
import time
from typing import Any

from pylon import pdk

name = "hmac-auth"
priority = 2530
version = 0.1
type = "auth"

ALLOWED_ALGORITHMS = ["hmac-sha1", "hmac-sha256", "hmac-sha512"]
_HASHES = {"hmac-sha1": hashlib.sha1, "hmac-sha256": hashlib.sha256,
           "hmac-sha512": hashlib.sha512}

schema = {
    "type": "object",
    "title": "work with route or service object",
    "properties": {
        "allowed_algorithms": {
            "type": "array", "minItems": 1,
            "items": {"type": "string", "enum": ALLOWED_ALGORITHMS},
            "default": ALLOWED_ALGORITHMS,
        },
        "clock_skew": {"type": "integer", "default": 300, "minimum": 1},
        "signed_headers": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 50},
            "default": ["date"],
        },
        "validate_request_body": {"type": "boolean", "default": False},
        "max_req_body_size": {"type": "integer", "minimum": 1, "default": 64 * 1024 * 1024},
        "hide_credentials": {"type": "boolean", "default": False},
        "anonymous_consumer": {"type": "string", "minLength": 1},
    },
}
consumer_schema = {
    "type": "object",
    "title": "work with consumer object",
    "properties": {
        "key_id": {"type": "string", "minLength": 1, "maxLength": 256},
        "secret_key": {"type": "string", "minLength": 1, "maxLength": 256},
    },
    "required": ["key_id", "secret_key"],
}
encrypt_fields = ("secret_key",)
consumer_key = "key_id"

PREFIX = "client request can't be validated"
INVALID_USER = "Invalid user authorization"

_FIELD = re.compile(r'(\w+)="([^"]*)"')


class _Route:
    __slots__ = ("algorithms", "anonymous", "body", "hide", "max_body", "signed", "skew")

    def __init__(self, conf: dict[str, Any]) -> None:
        self.algorithms = frozenset(conf["allowed_algorithms"])
        self.skew = conf["clock_skew"]
        self.signed = tuple(h.lower() for h in conf.get("signed_headers") or ())
        self.body = conf["validate_request_body"]
        self.max_body: int = conf["max_req_body_size"]
        self.hide = conf["hide_credentials"]
        self.anonymous = conf.get("anonymous_consumer")


def prepare(conf: dict[str, Any]) -> _Route:
    return _Route(conf)


def prepare_consumer(conf: dict[str, Any]) -> bytes:
    return conf["secret_key"].encode("utf-8")


def _fields(auth: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in _FIELD.findall(auth, 9):
        if key in ("keyId", "algorithm", "signature", "headers"):
            out.setdefault(key, value)
    return out


def signing_string(ctx: pdk.Context, key_id: str, headers: list[str]) -> str:
    items = [key_id]
    for h in headers:
        v = ctx.header(h) if h != "@request-target" else None
        if v is not None:
            items.append(f"{h}: {v}")
        elif h == "@request-target":
            items.append(f"{ctx.method} {ctx.var('request_uri') or '/'}")
    return "\n".join(items) + "\n"


def _validate(conf: _Route, ctx: pdk.Context, p: dict[str, str]
              ) -> tuple[pdk.Credential | None, str]:
    """The credential, or None and the reason (logged, not sent)."""
    key_id, sig = p.get("keyId"), p.get("signature")
    if not key_id or not sig:
        return None, "keyId or signature missing"
    alg = p.get("algorithm")
    if not alg:
        return None, "algorithm missing"
    cred = ctx.consumers.find(name, key_id)
    if cred is None:
        return None, "Invalid key_id"
    if alg not in conf.algorithms:
        return None, "Invalid algorithm"
    date = ctx.header("Date") or ctx.header("X-Date")
    if not date:
        return None, "Date header missing. failed to validate clock skew"
    parsed = email.utils.parsedate_tz(date)
    if parsed is None:
        return None, "Invalid GMT format time"
    try:
        when = email.utils.mktime_tz(parsed)
    except (OverflowError, ValueError):
        return None, "Invalid GMT format time"
    if abs(time.time() - when) > conf.skew:
        return None, "Clock skew exceeded"
    headers = p["headers"].split() if "headers" in p else []
    if conf.signed:
        if not headers:
            return None, "headers missing"
        have = {h.lower() for h in headers}
        for h in conf.signed:
            if h not in have:
                return None, f'expected header "{h}" missing in signing'
    try:
        given = base64.b64decode(sig.encode("latin-1"), validate=True)
    except (binascii.Error, ValueError):
        return None, "Invalid signature"
    msg = signing_string(ctx, key_id, headers).encode("latin-1", "replace")
    expected = hmac.new(cred.conf, msg, _HASHES[alg]).digest()
    if not hmac.compare_digest(given, expected):
        return None, "Invalid signature"
    return cred, ""


def authenticate(conf: _Route, ctx: pdk.Context) -> tuple[pdk.Credential | None, str, str]:
    """(credential, message for the client, reason for the log) -- without the body check."""
    auth = ctx.header("Authorization")
    if auth is None:
        return None, f"{PREFIX}: missing Authorization header", ""
    if not auth.startswith("Signature"):
        return None, f"{PREFIX}: Authorization header does not start with 'Signature'", ""
    cred, why = _validate(conf, ctx, _fields(auth))
    if cred is None:
        return None, PREFIX, why
    return cred, "", ""


def _finish(conf: _Route, ctx: pdk.Context, cred: pdk.Credential | None, err: str,
            why: str) -> Any:
    if cred is None:
        if why:
            pdk.log.warning("hmac-auth: %s: %s", PREFIX, why)
        else:
            pdk.log.info("hmac-auth: %s", err)
        if conf.anonymous is None:
            return 401, {"message": err}
        cred = pdk.anonymous_credential(ctx, name, conf.anonymous)
        if cred is None:
            return 401, {"message": INVALID_USER}
    if conf.hide:
        ctx.remove_header("Authorization")
    pdk.attach_consumer(ctx, cred)
    return None


async def _check_body(conf: _Route, ctx: pdk.Context, cred: pdk.Credential,
                      digest: str) -> Any:
    body = await ctx.read_body(conf.max_body)          # larger: 413 (APISIX >= 3.17)
    want = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    if not hmac.compare_digest(digest.encode("latin-1"), want.encode()):
        return _finish(conf, ctx, None, PREFIX, "Invalid digest")
    return _finish(conf, ctx, cred, "", "")


def rewrite(conf: _Route, ctx: pdk.Context) -> Any:
    cred, err, why = authenticate(conf, ctx)
    if cred is not None and conf.body:
        digest = ctx.header("Digest")
        if not digest:
            return _finish(conf, ctx, None, PREFIX, "Invalid digest")
        return _check_body(conf, ctx, cred, digest)
    return _finish(conf, ctx, cred, err, why)
