"""basic-auth: a consumer identified by HTTP Basic credentials (APISIX ``basic-auth``).

Route / service: ``hide_credentials`` (drop ``Authorization`` before proxying),
``anonymous_consumer`` (consumer used when authentication fails), ``realm`` (APISIX >= 3.15,
default ``basic``: the realm of the ``WWW-Authenticate`` challenge sent with every 401).
Consumer / credential: ``username`` (unique, the lookup key) and ``password`` (stored
encrypted).

Answers, as APISIX 3.x: no ``Authorization`` header → 401 ``Missing authorization in
request``; not ``Basic <base64 of user:password>`` → 401 ``Invalid authorization in
request``; unknown user or wrong password → 401 ``Invalid user authorization`` (the two are
not told apart, and the password comparison is constant-time, also for an unknown user).
Every 401 carries ``WWW-Authenticate: Basic realm="<realm>"``.

Differences from APISIX, deliberate: the credentials are split at the first ``:`` (RFC 7617:
a password may contain ``:``; APISIX keeps only the text up to a second ``:``), and only
surrounding whitespace is trimmed (APISIX removes every whitespace character, so a password
with a space can never match there).  The scheme name is matched case-insensitively.
Nothing is changed on the request unless authentication succeeds (so it can run under
multi-auth without leaving traces).
"""

from __future__ import annotations

import binascii
from typing import Any

from pylon import pdk

name = "basic-auth"
priority = 2520
version = 0.1
type = "auth"

schema = {
    "type": "object",
    "title": "work with route or service object",
    "properties": {
        "hide_credentials": {"type": "boolean", "default": False},
        "anonymous_consumer": {"type": "string", "minLength": 1},
        "realm": {"type": "string", "minLength": 1, "default": "basic"},
    },
}
consumer_schema = {
    "type": "object",
    "title": "work with consumer object",
    "properties": {
        "username": {"type": "string", "minLength": 1},
        "password": {"type": "string", "minLength": 1},
    },
    "required": ["username", "password"],
}
encrypt_fields = ("password",)
consumer_key = "username"

MISSING = "Missing authorization in request"
INVALID_HEADER = "Invalid authorization in request"
INVALID_USER = "Invalid user authorization"

_DUMMY = b"\0" * 32       # compared against when the user is unknown (same work, no timing hint)


class _Route:
    __slots__ = ("anonymous", "challenge", "hide")

    def __init__(self, conf: dict[str, Any]) -> None:
        self.hide = conf["hide_credentials"]
        self.anonymous = conf.get("anonymous_consumer")
        self.challenge = pdk.challenge("Basic", conf["realm"])


def prepare(conf: dict[str, Any]) -> _Route:
    return _Route(conf)


def prepare_consumer(conf: dict[str, Any]) -> bytes:
    """What a credential needs at request time: the password bytes."""
    return conf["password"].encode("utf-8")


def _parse(header: str) -> tuple[str, str] | None:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    token = token.strip()
    if not token:
        return None
    try:
        raw = binascii.a2b_base64(token.encode("latin-1"), strict_mode=True)
        decoded = raw.decode("utf-8")
    except (ValueError, UnicodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user.strip(), password.strip()


def authenticate(ctx: pdk.Context) -> tuple[pdk.Credential | None, str]:
    """The credential named by the request, or None and APISIX's message."""
    header = ctx.header("Authorization")
    if header is None:
        return None, MISSING
    parsed = _parse(header)
    if parsed is None:
        pdk.log.warning("basic-auth: malformed Authorization header")
        return None, INVALID_HEADER
    user, password = parsed
    cred = ctx.consumers.find(name, user)
    given = password.encode("utf-8")
    if cred is None:
        pdk.secure_equal(given, _DUMMY)
        return None, INVALID_USER
    if not pdk.secure_equal(given, cred.conf):
        return None, INVALID_USER
    return cred, ""


def rewrite(conf: _Route, ctx: pdk.Context) -> Any:
    cred, err = authenticate(ctx)
    if cred is None:
        if conf.anonymous is None:
            return 401, {"message": err}, conf.challenge
        cred = pdk.anonymous_credential(ctx, name, conf.anonymous)
        if cred is None:
            return 401, {"message": INVALID_USER}, conf.challenge
    if conf.hide:
        ctx.remove_header("Authorization")
    pdk.attach_consumer(ctx, cred)
    return None
