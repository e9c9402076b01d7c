"""ssl objects compiled into the SNI table a handshake looks its certificate up in.

``SslCompiler`` keeps a worker's ssl objects and turns each into an ``SslEntry`` once (its
certificates and keys parsed and loaded into ``SSLContext`` objects, one per ALPN list the
node's TLS listeners use); a change rebuilds only the objects it touches, and the table
(``SniTable``: two dicts) is made again beside the old one, so a handshake in progress keeps
the table it started with.  The lookup is APISIX's (``apisix/ssl/router/radixtree_sni.lua``):

* server names are compared in lower case, without a trailing dot (the configured ones and
  the client's);
* an exact name first, then a wildcard ``*.example.com``, which stands for exactly one label
  (``a.example.com``, not ``example.com`` nor ``a.b.example.com``); a more specific wildcard
  (``*.b.example.com``) wins over a shorter one by construction;
* only ``type: server`` objects with ``status`` 1 (or none) serve handshakes; ``type:
  client`` objects are kept by id for upstream mTLS (``tls.client_cert_id``);
* two objects claiming the same name: the one with the smaller id serves it.
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass
from typing import Any

from .certs import CertFacts, Opener, facts, is_pem, load_chain

HTTP11: tuple[str, ...] = ("http/1.1",)
H2: tuple[str, ...] = ("h2", "http/1.1")
#: ``ssl_protocols`` names -> the version numbers OpenSSL reports
VERSIONS: dict[str, int] = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303,
                            "TLSv1.3": 0x0304}


class EntryContext(ssl.SSLContext):
    """The ``SSLContext`` of one ssl object (and ALPN list): it knows its object, so a
    connection finds which one it was served with (``SSLObject.context.entry``)."""

    entry: SslEntry


@dataclass(frozen=True, slots=True)
class ClientAuth:
    """``client``: the CA the client certificate must chain to, how deep, and the request
    paths that may come without one (None: the handshake requires it)."""

    depth: int
    skip: tuple[re.Pattern[str], ...] | None

    def skips(self, uri: str) -> bool:
        if self.skip is None:
            return False
        for rx in self.skip:
            if rx.search(uri):
                return True
        return False


class SslEntry:
    """One usable ssl object: its names, contexts by ALPN list, client auth, protocols."""

    __slots__ = ("cert", "client", "contexts", "facts", "id", "key", "protocols", "snis",
                 "type")

    def __init__(self, oid: str, type_: str, snis: tuple[str, ...], cert: str, key: str,
                 client: ClientAuth | None, protocols: frozenset[int] | None,
                 cert_facts: tuple[CertFacts, ...]) -> None:
        self.id = oid
        self.type = type_
        self.snis = snis
        #: the PEM text, decrypted (``type: client`` objects: what an upstream connection
        #: presents)
        self.cert = cert
        self.key = key
        self.client = client
        self.protocols = protocols
        self.facts = cert_facts
        self.contexts: dict[tuple[str, ...], EntryContext] = {}


class SniTable:
    """The compiled lookup: exact names, one-label wildcards (by the suffix after ``*``),
    the rarer ``*name`` patterns; ``mtls``: some object asks clients for certificates (only
    then does a request over TLS check its Host against the table)."""

    __slots__ = ("by_id", "exact", "mtls", "odd", "wild")

    def __init__(self, entries: list[SslEntry]) -> None:
        self.by_id = {e.id: e for e in entries}
        self.exact: dict[str, SslEntry] = {}
        self.wild: dict[str, SslEntry] = {}
        self.odd: list[tuple[str, SslEntry]] = []
        self.mtls = False
        for e in sorted(entries, key=_id_order):
            if e.type != "server":
                continue
            if e.client is not None:
                self.mtls = True
            for sni in e.snis:
                if sni.startswith("*."):
                    self.wild.setdefault(sni[1:], e)
                elif sni.startswith("*"):
                    if all(s != sni[1:] for s, _ in self.odd):
                        self.odd.append((sni[1:], e))
                else:
                    self.exact.setdefault(sni, e)

    def find(self, name: str) -> SslEntry | None:
        """The object serving ``name`` (lower case, no trailing dot), or None."""
        e = self.exact.get(name)
        if e is not None:
            return e
        i = name.find(".")
        if i > 0:
            e = self.wild.get(name[i:])
            if e is not None:
                return e
        for suffix, e in self.odd:
            if len(name) > len(suffix) and name.endswith(suffix) and \
                    "." not in name[:-len(suffix)]:
                return e
        return None

    def client_cert(self, oid: str) -> SslEntry | None:
        """The ``type: client`` object ``oid`` (upstream mTLS), None if none is."""
        e = self.by_id.get(oid)
        return e if e is not None and e.type == "client" else None


def _id_order(e: SslEntry) -> tuple[int, int, str]:
    return (0, int(e.id), "") if e.id.isdigit() else (1, 0, e.id)


EMPTY_TABLE = SniTable([])


def normalize_sni(name: str) -> str:
    """A server name as APISIX compares it: lower case, no trailing dot."""
    name = name.lower()
    return name[:-1] if name.endswith(".") else name


def _resolve(value: Any, what: str, opener: Opener | None) -> str:
    """A PEM field as stored: decrypted (private keys), ``$env://NAME`` read."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string")
    if value.startswith("$env://"):
        name = value[len("$env://"):]
        got = os.environ.get(name)
        if got is None:
            raise ValueError(f"{what}: environment variable {name!r} is not set")
        return got
    if value.startswith("$secret://"):
        raise ValueError(f"{what}: $secret:// references are not supported yet")
    if opener is not None and not is_pem(value):
        value = opener(value)
        if not is_pem(value):
            raise ValueError(f"{what}: failed to decrypt previous encrypted key")
    return str(value)


def build_entry(oid: str, value: Any, opener: Opener | None,
                alpns: tuple[tuple[str, ...], ...]) -> SslEntry | None:
    """``value`` (an ssl object) compiled; None when it serves nothing (``status`` 0).
    Raises ValueError (TypeError) with the reason when it cannot be used."""
    if not isinstance(value, dict):
        raise TypeError("must be a mapping")
    if value.get("status", 1) != 1:
        return None
    type_ = value.get("type") or "server"
    cert = _resolve(value.get("cert"), "cert", None)
    key = _resolve(value.get("key"), "key", opener)
    pairs = [(cert, key)]
    certs = value.get("certs") or []
    keys = value.get("keys") or []
    if len(certs) != len(keys):
        raise ValueError("mismatched number of certs and keys")
    for i, (c, k) in enumerate(zip(certs, keys, strict=True)):
        pairs.append((_resolve(c, f"certs[{i}]", None), _resolve(k, f"keys[{i}]", opener)))
    cert_facts = tuple(f for f in (facts(c) for c, _ in pairs) if f is not None)
    if len(cert_facts) != len(pairs):
        raise ValueError("failed to parse cert: PEM_read_bio_X509_AUX() failed")
    raw_snis = value.get("snis") or ([value["sni"]] if value.get("sni") else [])
    snis = tuple(normalize_sni(str(s)) for s in raw_snis)
    if type_ == "server" and not snis:
        raise ValueError("needs sni or snis")
    client = None
    ca = None
    c = value.get("client")
    if type_ == "server" and isinstance(c, dict):
        from .native import available
        if not available():
            raise ValueError("client tls verify unsupported")
        ca = _resolve(c.get("ca"), "client.ca", None)
        skip = c.get("skip_mtls_uri_regex")
        try:
            rxs = tuple(re.compile(str(r)) for r in skip) if skip else None
        except re.error as e:
            raise ValueError(f"client.skip_mtls_uri_regex: {e}") from None
        client = ClientAuth(int(c.get("depth", 1)), rxs)
    protocols = None
    if value.get("ssl_protocols"):
        protocols = frozenset(VERSIONS[p] for p in value["ssl_protocols"] if p in VERSIONS)
    entry = SslEntry(oid, type_, snis, cert, key, client, protocols, cert_facts)
    if type_ != "server":
        return entry
    for alpn in alpns:
        ctx = EntryContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            for pc, pk in pairs:       # an RSA and an ECDSA pair: OpenSSL keeps both
                load_chain(ctx, pc, pk)
            if ca is not None:
                ctx.load_verify_locations(cadata=ca)
        except (ssl.SSLError, OSError) as e:
            raise ValueError(f"failed to load the certificate and key: {e}") from None
        ctx.set_alpn_protocols(list(alpn))
        ctx.entry = entry
        entry.contexts[alpn] = ctx
    return entry


class SslCompiler:
    """A worker's ssl objects and their entries: a change rebuilds what it touches."""

    def __init__(self, alpns: tuple[tuple[str, ...], ...] = (HTTP11,),
                 opener: Opener | None = None) -> None:
        self.alpns = alpns
        self.opener = opener
        #: id -> (the stored value, its entry or None)
        self.built: dict[str, tuple[Any, SslEntry | None]] = {}
        self.table = EMPTY_TABLE

    def update(self, puts: dict[str, Any], dels: set[str]) -> list[tuple[str, str]]:
        """Objects put (id -> stored value) and deleted; the new table is ``table``.
        Returns (id, reason) for each object put that cannot be used (it serves nothing)."""
        errors: list[tuple[str, str]] = []
        for oid in dels:
            self.built.pop(oid, None)
        for oid, value in puts.items():
            old = self.built.get(oid)
            if old is not None and old[0] == value:
                continue
            try:
                entry = build_entry(oid, value, self.opener, self.alpns)
            except (ValueError, TypeError) as e:
                errors.append((oid, str(e)))
                entry = None
            self.built[oid] = (value, entry)
        if puts or dels:
            self.table = SniTable([e for _, e in self.built.values() if e is not None])
        return errors
