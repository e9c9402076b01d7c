"""A small but real OpenID Connect provider for tests (a threaded http.server on 127.0.0.1).

Discovery document, JWKS (RSA keys made with ``cryptography``), an authorization endpoint
that approves at once (redirects back with ``code`` and ``state``; honours ``nonce`` and
PKCE S256), a token endpoint (``client_secret_basic`` / ``client_secret_post``;
``authorization_code`` and ``refresh_token`` grants; JWTs signed with PyJWT), RFC 7662
introspection, userinfo, end_session and revocation.  Every request is recorded.

::

    op = OIDCProvider(clients={"app": "app-secret"})
    token = op.mint({"scope": "read"})            # a signed access token
    op.close()
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["OIDCProvider"]


class _Key:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public = self.private.public_key()

    def jwk(self) -> dict[str, Any]:
        d = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.public))
        d.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return d  # type: ignore[no-any-return]

    def public_pem(self) -> str:
        return self.public.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo
                                        ).decode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class OIDCProvider:
    def __init__(self, clients: dict[str, str] | None = None) -> None:
        self.clients = dict(clients or {"app": "app-secret"})
        self.keys = [_Key("k1")]           # published; keys[0] signs
        self.user: dict[str, Any] = {"sub": "alice", "name": "Alice",
                                     "email": "alice@example.com"}
        self.access_ttl = 300
        self.id_token_overrides: dict[str, Any] = {}
        self.auth_methods = ["client_secret_basic", "client_secret_post"]
        self.requests: list[dict[str, Any]] = []
        self.codes: dict[str, dict[str, Any]] = {}
        self.refresh_tokens: dict[str, dict[str, Any]] = {}
        self.opaque: dict[str, dict[str, Any]] = {}
        self.revoked: set[str] = set()
        self.lock = threading.Lock()
        srv = _Server(("127.0.0.1", 0), _Handler)
        srv.op = self  # type: ignore[attr-defined]
        self.srv = srv
        self.port = srv.server_address[1]
        self.issuer = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=srv.serve_forever, daemon=True).start()

    # -- for tests -------------------------------------------------------------------------
    @property
    def discovery_url(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    def metadata(self) -> dict[str, Any]:
        i = self.issuer
        return {
            "issuer": i,
            "authorization_endpoint": i + "/authorize",
            "token_endpoint": i + "/token",
            "userinfo_endpoint": i + "/userinfo",
            "jwks_uri": i + "/jwks",
            "introspection_endpoint": i + "/introspect",
            "end_session_endpoint": i + "/logout",
            "revocation_endpoint": i + "/revoke",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": self.auth_methods,
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile", "email"],
        }

    def rotate_key(self) -> str:
        """A new signing key, published first (the old one stays published)."""
        with self.lock:
            k = _Key(f"k{len(self.keys) + 1}-{secrets.token_hex(2)}")
            self.keys.insert(0, k)
            return k.kid

    def public_pem(self) -> str:
        return self.keys[0].public_pem()

    def sign(self, claims: dict[str, Any], key: _Key | None = None) -> str:
        k = key or self.keys[0]
        return jwt.encode(claims, k.private, algorithm="RS256", headers={"kid": k.kid})

    def mint(self, extra: dict[str, Any] | None = None, ttl: int = 300,
             key: _Key | None = None, aud: Any = "app") -> str:
        """A signed access token for ``self.user``."""
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "sub": self.user["sub"], "aud": aud,
                                  "iat": now, "exp": now + ttl, "scope": "openid profile",
                                  "client_id": "app"}
        claims.update(extra or {})
        return self.sign(claims, key)

    def mint_opaque(self, extra: dict[str, Any] | None = None, ttl: int = 300) -> str:
        tok = secrets.token_urlsafe(24)
        now = int(time.time())
        with self.lock:
            self.opaque[tok] = {"sub": self.user["sub"], "scope": "openid", "iat": now,
                                "exp": now + ttl, "client_id": "app", "username": "alice",
                                **(extra or {})}
        return tok

    def count(self, path: str, method: str | None = None) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r["path"] == path
                       and (method is None or r["method"] == method))

    def last(self, path: str) -> dict[str, Any]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path][-1]

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()

    # -- token logic -----------------------------------------------------------------------
    def _verify_token(self, token: str) -> dict[str, Any] | None:
        if token in self.revoked:
            return None
        if token in self.opaque:
            c = self.opaque[token]
            return c if c["exp"] > time.time() else None
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return None
        for k in self.keys:
            if k.kid == kid:
                try:
                    return jwt.decode(token, k.public, algorithms=["RS256"],  # type: ignore
                                      options={"verify_aud": False})
                except jwt.PyJWTError:
                    return None
        return None

    def _issue(self, client_id: str, scope: str, nonce: str | None) -> dict[str, Any]:
        now = int(time.time())
        access = self.mint({"scope": scope, "client_id": client_id}, ttl=self.access_ttl,
                           aud=client_id)
        idt: dict[str, Any] = {"iss": self.issuer, "sub": self.user["sub"],
                               "aud": client_id, "iat": now, "exp": now + 300,
                               "name": self.user.get("name")}
        if nonce:
            idt["nonce"] = nonce
        idt.update(self.id_token_overrides)
        refresh = secrets.token_urlsafe(24)
        self.refresh_tokens[refresh] = {"client_id": client_id, "scope": scope}
        return {"access_token": access, "id_token": self.sign(idt), "token_type": "Bearer",
                "expires_in": self.access_ttl, "refresh_token": refresh, "scope": scope}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def op(self) -> OIDCProvider:
        return self.server.op  # type: ignore[no-any-return]

    def _send(self, status: int, body: Any = b"", headers: dict[str, str] | None = None
              ) -> None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _client(self, form: dict[str, str]) -> tuple[str | None, str | None]:
        """(client_id, method) when the client authenticated, else (None, None)."""
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                cid, _, sec = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return None, None
            cid, sec = unquote(cid), unquote(sec)
            method = "client_secret_basic"
        elif "client_secret" in form:
            cid, sec = form.get("client_id", ""), form["client_secret"]
            method = "client_secret_post"
        else:
            return None, None
        if self.op.clients.get(cid) != sec:
            return None, None
        return cid, method

    def do_GET(self) -> None:
        self._dispatch(b"")

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        self._dispatch(self.rfile.read(n) if n else b"")

    def _dispatch(self, body: bytes) -> None:
        u = urlsplit(self.path)
        q = dict(parse_qsl(u.query))
        form = dict(parse_qsl(body.decode())) if body else {}
        op = self.op
        rec = {"method": self.command, "path": u.path, "query": q, "form": form,
               "headers": {k.lower(): v for k, v in self.headers.items()}}
        with op.lock:
            op.requests.append(rec)
        with op.lock:
            getattr(self, "_p_" + u.path.strip("/").replace("/", "_").replace(".", "_")
                    .replace("-", "_"), self._p_missing)(rec, q, form)

    def _p_missing(self, rec: Any, q: Any, form: Any) -> None:
        self._send(404, {"error": "not_found"})

    def _p__well_known_openid_configuration(self, rec: Any, q: Any, form: Any) -> None:
        self._send(200, self.op.metadata())

    def _p_jwks(self, rec: Any, q: Any, form: Any) -> None:
        self._send(200, {"keys": [k.jwk() for k in self.op.keys]})

    def _p_authorize(self, rec: Any, q: dict[str, str], form: Any) -> None:
        op = self.op
        if q.get("client_id") not in op.clients or q.get("response_type") != "code" \
                or not q.get("redirect_uri"):
            self._send(400, {"error": "invalid_request"})
            return
        if q.get("code_challenge") and q.get("code_challenge_method") != "S256":
            self._send(400, {"error": "invalid_request"})
            return
        code = secrets.token_urlsafe(16)
        op.codes[code] = {"client_id": q["client_id"], "redirect_uri": q["redirect_uri"],
                          "nonce": q.get("nonce"), "challenge": q.get("code_challenge"),
                          "scope": q.get("scope", "openid")}
        params = {"code": code}
        if "state" in q:
            params["state"] = q["state"]
        sep = "&" if "?" in q["redirect_uri"] else "?"
        self._send(302, b"", {"Location": q["redirect_uri"] + sep + urlencode(params)})

    def _p_token(self, rec: Any, q: Any, form: dict[str, str]) -> None:
        op = self.op
        cid, method = self._client(form)
        rec["client_auth"] = method
        if cid is None:
            self._send(401, {"error": "invalid_client"})
            return
        grant = form.get("grant_type")
        if grant == "authorization_code":
            info = op.codes.pop(form.get("code", ""), None)
            if info is None or info["client_id"] != cid or \
                    info["redirect_uri"] != form.get("redirect_uri"):
                self._send(400, {"error": "invalid_grant"})
                return
            if info["challenge"]:
                v = form.get("code_verifier", "")
                calc = base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest()) \
                    .rstrip(b"=").decode()
                if calc != info["challenge"]:
                    self._send(400, {"error": "invalid_grant",
                                     "error_description": "PKCE verification failed"})
                    return
            self._send(200, op._issue(cid, info["scope"], info["nonce"]))
        elif grant == "refresh_token":
            info = op.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if info is None or info["client_id"] != cid:
                self._send(400, {"error": "invalid_grant"})
                return
            self._send(200, op._issue(cid, info["scope"], None))
        else:
            self._send(400, {"error": "unsupported_grant_type"})

    def _p_introspect(self, rec: Any, q: Any, form: dict[str, str]) -> None:
        cid, method = self._client(form)
        rec["client_auth"] = method
        if cid is None:
            self._send(401, {"error": "invalid_client"})
            return
        claims = self.op._verify_token(form.get("token", ""))
        if claims is None:
            self._send(200, {"active": False})
            return
        self._send(200, {"active": True, "token_type": "Bearer", **claims})

    def _p_userinfo(self, rec: Any, q: Any, form: Any) -> None:
        auth = self.headers.get("Authorization", "")
        claims = self.op._verify_token(auth[7:]) if auth.startswith("Bearer ") else None
        if claims is None:
            self._send(401, {"error": "invalid_token"},
                       {"WWW-Authenticate": 'Bearer error="invalid_token"'})
            return
        self._send(200, self.op.user)

    def _p_logout(self, rec: Any, q: dict[str, str], form: Any) -> None:
        if q.get("post_logout_redirect_uri"):
            self._send(302, b"", {"Location": q["post_logout_redirect_uri"]})
        else:
            self._send(200, "logged out", {"Content-Type": "text/plain"})

    def _p_revoke(self, rec: Any, q: Any, form: dict[str, str]) -> None:
        cid, _ = self._client(form)
        if cid is None:
            self._send(401, {"error": "invalid_client"})
            return
        self.op.revoked.add(form.get("token", ""))
        self._send(200, b"")
