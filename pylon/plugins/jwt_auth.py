"""jwt-auth: a consumer identified by a signed JSON Web Token (APISIX ``jwt-auth``, 3.x).

Route / service: ``header`` (default ``authorization``; a ``Bearer `` prefix is optional),
``query`` (default ``jwt``), ``cookie`` (default ``jwt``) -- looked at in that order --,
``hide_credentials`` (drop the header / query argument / cookie that carried the token),
``key_claim_name`` (default ``key``: the claim naming the consumer credential),
``claims_to_verify`` (default ``["exp", "nbf"]``: checked when present in the token),
``store_in_ctx`` (the verified payload goes to ``ctx.store["jwt_auth_payload"]``, APISIX's
``ctx.jwt_auth_payload``), ``realm`` (default ``jwt``) and ``anonymous_consumer``.

Consumer / credential: ``key`` (unique), ``secret`` (stored encrypted; HS256/HS384/HS512),
``public_key`` (PEM; RS*, PS*, ES*, EdDSA), ``algorithm`` (APISIX's enum: HS256, HS384, HS512,
RS256, RS384, RS512, ES256, ES384, ES512, PS256, PS384, PS512, EdDSA; default HS256),
``base64_secret``, ``lifetime_grace_period`` (seconds of clock skew allowed for ``exp`` and
``nbf``) and ``exp`` (kept for APISIX compatibility: the lifetime of tokens APISIX signs; Pylon
has no signing endpoint).  ``private_key`` is accepted (APISIX 2.x/3.0 configs carry it) and
ignored; it is stored encrypted.

JWKS (Pylon extension): a consumer with an asymmetric ``algorithm`` may give ``jwks``, an
inline JWK Set (``{"keys": [...]}``) instead of, or besides, ``public_key``.  The token's
``kid`` header picks the key; a token without ``kid`` uses ``public_key``, or the only key of
the set when it holds one.  Keys must be RSA / EC / OKP keys fitting ``algorithm`` (a key's
own ``alg``, when given, must equal it; ``use``, when given, must be ``sig``); symmetric
(``oct``) keys are refused.  Every key is parsed once per configuration snapshot
(``prepare_consumer``), never per request.

Answers (APISIX 3.x texts, each 401 with ``WWW-Authenticate: Bearer realm="<realm>"``):
no token → ``Missing JWT token in request``; not a parsable JWT → ``JWT token invalid``;
no key claim → ``missing user key in JWT token``; no consumer with that key → ``Invalid user
key in JWT token``; bad signature, wrong algorithm, expired or not yet valid →
``failed to verify jwt`` (the reason is logged, never the token); a configured anonymous
consumer that does not exist → ``Invalid user authorization``.

Deliberate differences from APISIX:

* The algorithm is the consumer's, never the token's: a token whose ``alg`` header differs
  is refused.  (APISIX's 3.x JWT parser picks the verifier from the token's ``alg`` header
  and feeds it the consumer's key, so an HS256 token MACed with an RS256 consumer's public
  key PEM can pass there -- algorithm confusion.)  ``none`` never passes.
* HMAC secrets shorter than the hash output (RFC 7518 3.2: at least 32 bytes for HS256, 48
  for HS384, 64 for HS512, counted after base64 decoding with ``base64_secret``) load, as in
  APISIX, so an APISIX data set with ``"secret": "my-secret-key"`` loads unchanged -- but
  with a warning in the error log and a ``warning`` field in the Admin API's answer to the
  write.  A node with ``reject_short_jwt_secrets: true`` (``apisix:`` / ``pylon:`` section)
  refuses them instead: ``secret is too short for HS256 ...`` (the Admin API refuses the
  write; a config file that has one reports that consumer as rejected and serves the
  others).
* A consumer with an HS algorithm and no ``secret`` is refused (APISIX invents a random one,
  usable only through its signing endpoint, which Pylon does not have).
* The token is removed (``hide_credentials``) only when authentication succeeds or the
  anonymous consumer is used (APISIX removes it as soon as it is found), so a failed attempt
  under multi-auth changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

import jwt
import msgspec
from jwt.algorithms import get_default_algorithms

from pylon import pdk

name = "jwt-auth"
priority = 2510
version = 0.1
type = "auth"

HS_ALGS = ("HS256", "HS384", "HS512")
ASYM_ALGS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
             "PS256", "PS384", "PS512", "EdDSA")
ALGORITHMS = HS_ALGS + ASYM_ALGS
MIN_SECRET = {"HS256": 32, "HS384": 48, "HS512": 64}
_KTY = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}

schema = {
    "type": "object",
    "properties": {
        "header": {"type": "string", "default": "authorization"},
        "query": {"type": "string", "default": "jwt"},
        "cookie": {"type": "string", "default": "jwt"},
        "hide_credentials": {"type": "boolean", "default": False},
        "key_claim_name": {"type": "string", "minLength": 1, "default": "key"},
        "store_in_ctx": {"type": "boolean", "default": False},
        "realm": {"type": "string", "minLength": 1, "default": "jwt"},
        "anonymous_consumer": {"type": "string", "minLength": 1},
        "claims_to_verify": {
            "type": "array",
            "items": {"type": "string", "enum": ["exp", "nbf"]},
            "uniqueItems": True,
            "default": ["exp", "nbf"],
        },
    },
}
consumer_schema = {
    "type": "object",
    "properties": {
        "key": {"type": "string", "minLength": 1},
        "secret": {"type": "string", "minLength": 1},
        "public_key": {"type": "string", "minLength": 1},
        "private_key": {"type": "string"},
        "algorithm": {"type": "string", "enum": list(ALGORITHMS), "default": "HS256"},
        "exp": {"type": "integer", "minimum": 1, "default": 86400},
        "base64_secret": {"type": "boolean", "default": False},
        "lifetime_grace_period": {"type": "integer", "minimum": 0, "default": 0},
        "jwks": {
            "type": "object",
            "properties": {"keys": {"type": "array", "minItems": 1,
                                    "items": {"type": "object",
                                              "required": ["kty"]}}},
            "required": ["keys"],
        },
    },
    "required": ["key"],
}
encrypt_fields = ("secret", "private_key")
consumer_key = "key"

MISSING = "Missing JWT token in request"
INVALID = "JWT token invalid"
NO_KEY = "missing user key in JWT token"
BAD_KEY = "Invalid user key in JWT token"
FAILED = "failed to verify jwt"
INVALID_USER = "Invalid user authorization"

_ALGOS = get_default_algorithms()
_decode_json = msgspec.json.Decoder().decode
_enc = msgspec.json.Encoder(order="sorted").encode


# ----------------------------------------------------------------------------- configuration
class _Cred:
    """A prepared consumer credential: the verifier and its key(s)."""

    __slots__ = ("alg", "algo", "default", "grace", "kids")

    def __init__(self, alg: str, default: Any, kids: dict[str, Any], grace: int) -> None:
        self.alg = alg
        self.algo = _ALGOS[alg]
        self.default = default          # key for a token without a (known) kid, or None
        self.kids = kids                # kid -> prepared key (JWKS)
        self.grace = grace


def _secret_bytes(conf: dict[str, Any]) -> bytes:
    secret = conf["secret"]
    if conf["base64_secret"]:
        try:
            return base64.b64decode(secret.encode("latin-1"), validate=True)
        except (binascii.Error, ValueError, UnicodeError):
            raise ValueError("base64_secret required but the secret is not in base64 "
                             "format") from None
    return secret.encode("utf-8")


def _load(conf: dict[str, Any]) -> _Cred:
    """Parse and check a consumer configuration (raises ValueError with a clear text)."""
    alg = conf["algorithm"]
    algo = _ALGOS[alg]
    grace = conf["lifetime_grace_period"]
    if alg in HS_ALGS:
        if not conf.get("secret"):
            raise ValueError(f'property "secret" is required when "algorithm" is "{alg}"')
        raw = _secret_bytes(conf)
        need = MIN_SECRET[alg]
        if len(raw) < need:
            if pdk.node_setting("reject_short_jwt_secrets"):
                raise ValueError(
                    f"secret is too short for {alg}: {len(raw)} bytes, at least {need} are "
                    f"required (RFC 7518 3.2; the node sets reject_short_jwt_secrets)")
            pdk.config_warning(
                f"jwt-auth: the secret of key {conf.get('key')!r} is too short for {alg}: "
                f"{len(raw)} bytes, RFC 7518 3.2 asks for at least {need} (accepted as "
                f"APISIX accepts it; reject_short_jwt_secrets refuses such secrets)")
        try:
            key = algo.prepare_key(raw)
        except Exception as e:  # noqa: BLE001 - jwt.InvalidKeyError and friends
            raise ValueError(f"invalid secret for {alg}: {e}") from None
        return _Cred(alg, key, {}, grace)

    family = _KTY[alg[:2]]
    default = None
    if conf.get("public_key"):
        try:
            default = algo.prepare_key(conf["public_key"])
        except Exception:  # noqa: BLE001
            raise ValueError(f"invalid public_key: not a PEM {family} public key fitting "
                             f"{alg}") from None
    kids: dict[str, Any] = {}
    jwks = conf.get("jwks")
    if jwks is not None:
        keys = jwks["keys"]
        for i, jwk in enumerate(keys):
            where = f"jwks.keys[{i}]"
            if jwk.get("kty") != family:
                raise ValueError(f"{where}: kty must be {family!r} for {alg}")
            if jwk.get("alg") not in (None, alg):
                raise ValueError(f"{where}: alg {jwk.get('alg')!r} does not match the "
                                 f"consumer's algorithm {alg}")
            if jwk.get("use") not in (None, "sig"):
                raise ValueError(f"{where}: use must be \"sig\"")
            if "d" in jwk or "p" in jwk:
                raise ValueError(f"{where}: a private key does not belong in jwks")
            try:
                key = jwt.PyJWK(jwk, alg).key
            except Exception:  # noqa: BLE001
                raise ValueError(f"{where}: not a valid {family} key for {alg}") from None
            kid = jwk.get("kid")
            if kid is None:
                if len(keys) > 1:
                    raise ValueError(f"{where}: kid is required when jwks holds several "
                                     f"keys")
                if default is None:
                    default = key
            elif kid in kids:
                raise ValueError(f"{where}: duplicate kid {kid!r}")
            else:
                kids[str(kid)] = key
        if default is None and len(kids) == 1:
            default = next(iter(kids.values()))
    if default is None and not kids:
        raise ValueError("missing valid public key")
    return _Cred(alg, default, kids, grace)


# the compiler checks a consumer configuration and then prepares it: the key parsed by the
# check is reused (one slot, keyed by the whole configuration)
_last: tuple[bytes, _Cred] | None = None


def check(conf: dict[str, Any], schema_type: str) -> None:
    global _last
    if schema_type == "consumer":
        cred = _load(conf)
        _last = (_enc(conf), cred)


def prepare_consumer(conf: dict[str, Any]) -> _Cred:
    global _last
    last, _last = _last, None
    if last is not None and last[0] == _enc(conf):
        return last[1]
    return _load(conf)


class _Route:
    __slots__ = ("anonymous", "challenge", "claims", "cookie", "header", "hide", "key_claim",
                 "query", "store")

    def __init__(self, conf: dict[str, Any]) -> None:
        self.header = conf["header"]
        self.query = conf["query"]
        self.cookie = conf["cookie"]
        self.hide = conf["hide_credentials"]
        self.key_claim = conf["key_claim_name"]
        self.store = conf["store_in_ctx"]
        self.anonymous = conf.get("anonymous_consumer")
        self.claims = tuple(conf["claims_to_verify"])
        self.challenge = pdk.challenge("Bearer", conf["realm"])


def prepare(conf: dict[str, Any]) -> _Route:
    return _Route(conf)


# ----------------------------------------------------------------------------- request
def _b64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _fetch(conf: _Route, ctx: pdk.Context) -> tuple[str | None, str]:
    """The token and where it came from (``header`` / ``query`` / ``cookie``)."""
    token = ctx.header(conf.header)
    if token is not None:
        if token[:7].lower() == "bearer ":
            token = token[7:]
        return token.strip(), "header"
    token = ctx.arg(conf.query)
    if token is not None:
        return token, "query"
    token = ctx.cookie(conf.cookie)
    if token is not None:
        return token, "cookie"
    return None, ""


def _hide(conf: _Route, ctx: pdk.Context, where: str) -> None:
    if where == "header":
        ctx.remove_header(conf.header)
    elif where == "query":
        args = dict(ctx.args())
        args.pop(conf.query, None)
        ctx.set_args(args)
    elif where == "cookie":
        raw = ctx.header("Cookie") or ""
        keep = [p.strip() for p in raw.split(";")
                if p.strip() and p.strip().partition("=")[0].strip() != conf.cookie]
        ctx.set_header("Cookie", "; ".join(keep) if keep else None)


def _claims_ok(payload: dict[str, Any], claims: tuple[str, ...], grace: int) -> str | None:
    now = time.time()
    for claim in claims:
        v = payload.get(claim)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"claim {claim} is not a number"
        if claim == "exp" and not v > now - grace:
            return f"'exp' claim expired at {int(v)}"
        if claim == "nbf" and not v <= now + grace:
            return f"'nbf' claim not valid until {int(v)}"
    return None


def authenticate(conf: _Route, ctx: pdk.Context, token: str
                 ) -> tuple[pdk.Credential | None, str, dict[str, Any] | None]:
    """Verify ``token``: the credential and payload, or None and APISIX's message.

    A token whose signature was verified before (same consumers snapshot) skips the
    decoding and the signature; its time claims are checked on every request."""
    consumers = ctx.consumers
    hit = consumers.memo.get((name, conf.key_claim, token))
    if hit is not None:
        cred, payload = hit
        err = _claims_ok(payload, conf.claims, cred.conf.grace)
        if err is not None:
            pdk.log.warning("jwt-auth: failed to verify jwt: %s", err)
            return None, FAILED, None
        return cred, "", payload
    parts = token.split(".")
    if len(parts) != 3:
        pdk.log.warning("jwt-auth: JWT token invalid: not three dot-separated parts")
        return None, INVALID, None
    try:
        header = _decode_json(_b64url(parts[0]))
        payload = _decode_json(_b64url(parts[1]))
        signature = _b64url(parts[2])
    except (ValueError, msgspec.DecodeError, binascii.Error):
        pdk.log.warning("jwt-auth: JWT token invalid: bad base64url or JSON")
        return None, INVALID, None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        pdk.log.warning("jwt-auth: JWT token invalid: header or payload is not an object")
        return None, INVALID, None
    user_key = payload.get(conf.key_claim)
    if user_key is None:
        return None, NO_KEY, None
    cred = ctx.consumers.find(name, user_key) if isinstance(user_key, str) else None
    if cred is None:
        return None, BAD_KEY, None
    pc: _Cred = cred.conf
    alg = header.get("alg")
    if alg != pc.alg:
        pdk.log.warning("jwt-auth: failed to verify jwt: token algorithm %r, consumer %s "
                        "expects %s", alg if isinstance(alg, str) else alg.__class__.__name__,
                        cred.consumer.username, pc.alg)
        return None, FAILED, None
    kid = header.get("kid")
    key = pc.kids.get(kid) if isinstance(kid, str) and pc.kids else None
    if key is None:
        key = pc.default
    if key is None:
        pdk.log.warning("jwt-auth: failed to verify jwt: no key with kid %r for consumer %s",
                        kid if isinstance(kid, str) else None, cred.consumer.username)
        return None, FAILED, None
    signing_input = token[:len(parts[0]) + 1 + len(parts[1])].encode("latin-1")
    try:
        ok = pc.algo.verify(signing_input, key, signature)
    except Exception:  # noqa: BLE001 - malformed signatures must not become a 500
        ok = False
    if not ok:
        pdk.log.warning("jwt-auth: failed to verify jwt: signature mismatch (consumer %s)",
                        cred.consumer.username)
        return None, FAILED, None
    err = _claims_ok(payload, conf.claims, pc.grace)
    if err is not None:
        pdk.log.warning("jwt-auth: failed to verify jwt: %s", err)
        return None, FAILED, None
    if len(token) <= 8192:
        consumers.remember((name, conf.key_claim, token), (cred, payload))
    return cred, "", payload


def rewrite(conf: _Route, ctx: pdk.Context) -> Any:
    token, where = _fetch(conf, ctx)
    payload = None
    if token is None:
        cred, err = None, MISSING
    else:
        try:
            cred, err, payload = authenticate(conf, ctx, token)
        except UnicodeError:        # a non-ASCII token
            cred, err = None, INVALID
    if cred is None:
        if conf.anonymous is None:
            return 401, {"message": err}, conf.challenge
        cred = pdk.anonymous_credential(ctx, name, conf.anonymous)
        if cred is None:
            return 401, {"message": INVALID_USER}, conf.challenge
    elif conf.store and payload is not None:
        ctx.store["jwt_auth_payload"] = dict(payload)   # the memo keeps its own
    if conf.hide and where:
        _hide(conf, ctx, where)
    pdk.attach_consumer(ctx, cred)
    return None
