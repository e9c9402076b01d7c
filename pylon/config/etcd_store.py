"""etcd v3 as the config store, in APISIX's layout, through aetcd.

Keys live under ``deployment.etcd.prefix`` exactly as APISIX writes them (``/apisix/routes/1``
is our ``routes/1``), each holding one JSON object, so an existing APISIX etcd loads
unchanged.  Anything else under the prefix -- the ``/apisix/routes`` directory placeholders
``apisix init_etcd`` writes, empty or non-JSON values -- is not configuration: ``load`` skips
it, and the watch reports a put of such a value as a delete of that key (so the watched state
always equals what ``load`` would return).

This is the only module that imports aetcd, and it uses it for what aetcd does well: the
generated etcd protos and stubs, the client object holding the channel and the auth token,
compare builders and lease grants.  aetcd 1.0 cannot do everything we need, so these parts
are ours (see ``_Client`` and ``_Link``):

* **TLS**: aetcd always opens an insecure channel.  ``_Client.connect`` builds the channel
  itself (CA, client certificate, SNI; ``verify: false`` pins the certificate the server
  presents, since gRPC has no switch to skip verification).
* **Paged reads**: aetcd's range has no ``limit``/``revision``; ``load`` pages through the
  prefix at one fixed revision with the raw ``Range`` RPC, so 100k keys are neither one
  giant message nor an inconsistent mix of revisions.
* **Transactions**: aetcd's ``transaction()`` drops the response header, and we need its
  revision; ``commit`` sends the ``Txn`` RPC itself.
* **Watch**: aetcd's watch flattens responses into single events (no batches, no header,
  no progress or fragment handling) and gives up on errors.  Ours drives the bidirectional
  ``Watch`` stream directly: one batch per response, fragments merged, compaction answered
  with a re-list and ``sink.reset``, outages with back-off and a re-watch from the last
  delivered revision + 1.
* **Reconnects, fail-over, token expiry**: aetcd neither reconnects nor re-authenticates
  (etcd's simple tokens expire after 5 idle minutes).  ``_Link`` keeps one client, moves
  to the next ``host`` on a connection failure and re-authenticates once on an invalid
  token.

Every network wait is bounded: unary calls by ``deployment.etcd.timeout`` (the whole call,
across fail-over), the watch stream's idle reads by HTTP/2 keepalive pings (a dead peer
errors the stream within ~``keepalive`` seconds), and back-off sleeps by the ``stop`` event.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import socket
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import aetcd
import aetcd.exceptions
import aetcd.utils
import grpc
import msgspec
from aetcd import rpc

from ..errors import ConfigError
from .store import Conflict, Event, Item, Op, StoreError, WatchSink

if TYPE_CHECKING:
    from ..settings import EtcdSection, EtcdTls

log = logging.getLogger("pylon.config")

T = TypeVar("T")

#: keys per ``Range`` page in ``load``: big enough that 100k keys take a few dozen round
#: trips, small enough that a page of large objects stays a modest message
PAGE_SIZE = 5000
#: ``load`` starts over when compaction overtakes its snapshot revision between pages
LOAD_ATTEMPTS = 3
#: HTTP/2 keepalive on our channels; etcd's default ``--grpc-keepalive-min-time`` is 5 s,
#: and pinging more often than that gets the connection closed (``too_many_pings``)
KEEPALIVE_S = 10.0

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


# -- errors ----------------------------------------------------------------------------------
#: how a failure is handled: move to the next host / re-authenticate / re-list / give up
_UNREACHABLE, _TIMEOUT, _TOKEN, _COMPACTED, _REFUSED = (
    "unreachable", "timeout", "token", "compacted", "refused")


def _rpc_error(exc: BaseException) -> grpc.aio.AioRpcError | None:
    """The gRPC status behind ``exc`` (aetcd wraps it in its own exception classes)."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 5:
        if isinstance(cur, grpc.aio.AioRpcError):
            return cur
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


def _classify(exc: BaseException) -> tuple[str, str]:
    """(kind, human-readable detail) of a failed call."""
    err = _rpc_error(exc)
    if err is not None:
        code, detail = err.code(), (err.details() or str(err.code())).strip()
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                    grpc.StatusCode.UNKNOWN):
            return _UNREACHABLE, detail
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return _TIMEOUT, "timed out"
        if code == grpc.StatusCode.OUT_OF_RANGE:
            return _COMPACTED, detail
        if code == grpc.StatusCode.UNAUTHENTICATED and "token" in detail:
            return _TOKEN, detail
        return _REFUSED, detail + _hint(detail)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, aetcd.exceptions.WatchTimeoutError,
                        aetcd.exceptions.ConnectionTimeoutError)):
        return _TIMEOUT, "timed out"
    if isinstance(exc, (OSError, aetcd.exceptions.ConnectionFailedError)):
        return _UNREACHABLE, str(exc) or type(exc).__name__
    return _REFUSED, f"{type(exc).__name__}: {exc}"


def _hint(detail: str) -> str:
    if "user name is empty" in detail:
        return " (etcd has authentication enabled: set deployment.etcd.user and password)"
    if "invalid user ID or password" in detail:
        return " (check deployment.etcd.user and password)"
    if "permission denied" in detail:
        return " (the etcd user needs read/write access to the prefix)"
    return ""


class _WatchLost(Exception):
    """The watch stream ended or was canceled by the server (not a compaction)."""


class _SinkFailed(Exception):
    """The sink raised: a bug on the other side, recovered by a full ``reset``."""


# -- endpoints and channels ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Endpoint:
    url: str            # as configured, for messages
    host: str           # hostname or address, without brackets
    port: int
    tls: bool

    @property
    def target(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _parse_host(url: str) -> _Endpoint:
    raw = url if "://" in url else f"http://{url}"
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{url!r} is not an http(s)://host:port etcd address",
                          "deployment.etcd.host")
    try:
        port = parts.port or 2379
    except ValueError as e:
        raise ConfigError(f"{url!r}: {e}", "deployment.etcd.host") from None
    return _Endpoint(url, parts.hostname, port, parts.scheme == "https")


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise StoreError(f"deployment.etcd.tls.{what}: cannot read {path}: {e}") from None


def _presented_certificate(ep: _Endpoint, tls: EtcdTls | None, timeout: float) -> bytes:
    """The PEM certificate ``ep`` presents, fetched without verifying it (blocking: run in a
    thread).  Our client certificate is offered, as a server with client-cert-auth may
    refuse the handshake otherwise."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if tls is not None and tls.cert and tls.key:
        ctx.load_cert_chain(tls.cert, tls.key)
    sni = (tls.sni if tls is not None else None) or ep.host
    with socket.create_connection((ep.host, ep.port), timeout=timeout) as sock, \
            ctx.wrap_socket(sock, server_hostname=sni) as tsock:
        der = tsock.getpeercert(binary_form=True)
    if not der:
        raise OSError(f"{ep.url} presented no certificate")
    return ssl.DER_cert_to_PEM_cert(der).encode()


def _certificate_name(pem: bytes) -> str | None:
    """A DNS name or address the certificate is valid for, so gRPC's hostname check passes
    for a pinned certificate (``verify: false``).  Uses ``cryptography`` when installed, else
    CPython's certificate decoder."""
    try:
        from cryptography import x509
        cert = x509.load_pem_x509_certificate(pem)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            for name in san.get_values_for_type(x509.DNSName):
                return str(name)
            for ip in san.get_values_for_type(x509.IPAddress):
                return str(ip)
        except x509.ExtensionNotFound:
            pass
        cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return str(cns[0].value) if cns else None
    except ImportError:
        pass
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:
        return None
    fd, path = tempfile.mkstemp(suffix=".pem")
    try:
        os.write(fd, pem)
        os.close(fd)
        info = decode(path)
    finally:
        os.unlink(path)
    for kind, value in info.get("subjectAltName", ()):
        if kind in ("DNS", "IP Address"):
            return str(value)
    for rdn in info.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return str(v)
    return None


class _Client(aetcd.Client):
    """aetcd's client on a channel we build.

    aetcd 1.0's ``connect`` can only open insecure channels and fails outright when auth is
    configured on a server without auth; this ``connect`` builds a plain or TLS channel
    with our options, authenticates if asked (and tolerates "authentication is not
    enabled"), then sets the same attributes aetcd's own ``connect`` sets, so aetcd's
    methods (``lease``, ``revoke_lease`` ...) work unchanged."""

    def __init__(self, ep: _Endpoint, cfg: EtcdSection) -> None:
        user = cfg.user or None
        password = (cfg.password or "") if user else None
        super().__init__(host=ep.host, port=ep.port, username=user, password=password,
                         timeout=cfg.timeout)
        self.endpoint = ep
        self._cfg = cfg

    def _channel_options(self, name_override: str | None) -> list[tuple[str, Any]]:
        keepalive_ms = int(KEEPALIVE_S * 1000)
        opts: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", -1),     # etcd is trusted; pages can be big
            ("grpc.keepalive_time_ms", keepalive_ms),
            ("grpc.keepalive_timeout_ms", int(min(self._cfg.timeout, KEEPALIVE_S) * 1000)),
            ("grpc.keepalive_permit_without_calls", 0),  # etcd would answer too_many_pings
            ("grpc.http2.max_pings_without_data", 0),    # keep pinging an idle watch
            # (not min_reconnect_backoff_ms: gRPC also uses it as the connect timeout, and
            # a TLS handshake to a distant member may need more than a few hundred ms)
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 5000),
            ("grpc.enable_retries", 0),                  # retries are ours (commit safety)
            # a fresh client must really dial: gRPC otherwise shares subchannels between
            # channels to one target, and a new channel inherits the old one's failure
            # back-off ("connection refused" for seconds after etcd is back)
            ("grpc.use_local_subchannel_pool", 1),
        ]
        if name_override:
            opts.append(("grpc.ssl_target_name_override", name_override))
        return opts

    async def _make_channel(self) -> grpc.aio.Channel:
        ep, tls = self.endpoint, self._cfg.tls
        if not ep.tls:
            return grpc.aio.insecure_channel(ep.target, options=self._channel_options(None))
        root: bytes | None = None
        sni = tls.sni if tls is not None else None
        if tls is not None and tls.ca:
            root = _read(tls.ca, "ca")
        if tls is not None and not tls.verify:
            # gRPC cannot skip verification: trust exactly what the server presents now
            root = await asyncio.wait_for(
                asyncio.to_thread(_presented_certificate, ep, tls, self._cfg.timeout),
                self._cfg.timeout)
            sni = sni or _certificate_name(root)
        key = _read(tls.key, "key") if tls is not None and tls.key else None
        chain = _read(tls.cert, "cert") if tls is not None and tls.cert else None
        creds = grpc.ssl_channel_credentials(root_certificates=root, private_key=key,
                                             certificate_chain=chain)
        return grpc.aio.secure_channel(ep.target, creds, options=self._channel_options(sni))

    async def connect(self, timeout: float | None = None) -> None:
        """Dial (bounded by ``timeout``, default ``cfg.timeout``) and authenticate."""
        if self._connected.is_set():
            return
        channel = await self._make_channel()
        metadata = None
        try:
            await _dial(channel, timeout or self._cfg.timeout)
            if self._username is not None:
                stub = rpc.AuthStub(channel)
                req = rpc.AuthenticateRequest(name=self._username, password=self._password)
                try:
                    resp = await stub.Authenticate(req, timeout=self._timeout)
                    metadata = (("token", resp.token),)
                except grpc.aio.AioRpcError as e:
                    if "authentication is not enabled" not in (e.details() or ""):
                        raise
                    log.debug("etcd %s: authentication is not enabled; user ignored",
                              self.endpoint.url)
        except BaseException:
            await channel.close()
            raise
        self.channel = channel
        self.metadata = metadata
        self.auth_stub = rpc.AuthStub(channel)
        self.kvstub = rpc.KVStub(channel)
        self.clusterstub = rpc.ClusterStub(channel)
        self.leasestub = rpc.LeaseStub(channel)
        self.maintenancestub = rpc.MaintenanceStub(channel)
        self._connected.set()

    def broken(self) -> bool:
        """The connection failed since we last used it: start over with a new client."""
        return self.channel is None or self.channel.get_state() in _FAILED

    async def ready(self, timeout: float) -> None:
        """Reconnect an idle channel now, so a following request is known to be sent."""
        await _dial(self.channel, timeout)


_FAILED = (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN)


async def _dial(channel: grpc.aio.Channel, timeout: float) -> None:
    """Connect ``channel`` now, giving up after ``timeout`` on a host that never answers.
    Knowing the channel is READY before a request tells a commit that timed out "maybe
    applied" apart from "never sent".  A refused connection (or failed TLS handshake) returns
    at once: the request that follows fails fast with gRPC's explanation of why."""
    deadline = time.monotonic() + timeout
    state = channel.get_state(try_to_connect=True)
    # bounded: a handful of state changes (idle, connecting, ready/failure) or the deadline
    while state != grpc.ChannelConnectivity.READY:
        if state in _FAILED:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("connect timed out")
        try:
            await asyncio.wait_for(channel.wait_for_state_change(state), remaining)
        except TimeoutError:
            raise TimeoutError("connect timed out") from None
        state = channel.get_state(try_to_connect=True)


async def _close_quietly(client: _Client | None) -> None:
    if client is None:
        return
    try:
        await asyncio.wait_for(client.close(), 2.0)
    except Exception as e:  # noqa: BLE001 -- already broken: nothing left to release
        log.debug("etcd: closing client: %r", e)


class _Link:
    """One live client to one of the configured hosts, shared by ``load`` and ``commit``;
    moves to the next host when a call cannot reach the current one."""

    def __init__(self, endpoints: list[_Endpoint], cfg: EtcdSection) -> None:
        self.endpoints = endpoints
        self.cfg = cfg
        self.index = 0
        self.client: _Client | None = None
        self._lock = asyncio.Lock()

    async def get(self, timeout: float) -> _Client:
        """The current client, connected (within ``timeout``) and ready to send."""
        async with self._lock:
            if self.client is not None and self.client.broken():
                old, self.client = self.client, None
                await _close_quietly(old)
            if self.client is None:
                client = _Client(self.endpoints[self.index], self.cfg)
                try:
                    await client.connect(timeout)
                except BaseException:
                    await _close_quietly(client)
                    raise
                self.client = client
            else:
                await self.client.ready(timeout)
            return self.client

    async def drop(self, client: _Client | None, *, next_host: bool) -> None:
        """Forget ``client`` (if still current) and, on a connection failure, move on."""
        if client is not None and self.client is client:
            self.client = None
            if next_host:
                self.index = (self.index + 1) % len(self.endpoints)
        await _close_quietly(client)

    async def close(self) -> None:
        client, self.client = self.client, None
        await _close_quietly(client)


# -- the store -------------------------------------------------------------------------------
class EtcdStore:
    """The configuration in etcd v3 (``deployment.config_provider: etcd``)."""

    name = "etcd"
    #: watch back-off: first delay and cap (seconds), jittered +-20%
    backoff_initial = 0.1
    backoff_cap = 5.0

    def __init__(self, cfg: EtcdSection) -> None:
        if not cfg.host:
            raise ConfigError("at least one etcd host is required", "deployment.etcd.host")
        self.cfg = cfg
        self.endpoints = [_parse_host(h) for h in cfg.host]
        base = cfg.prefix.rstrip("/")
        self.where = f"etcd {','.join(cfg.host)}{base}"
        #: every key of ours starts with this (``/apisix/``); the range ends just past it
        self._dir = (base + "/").encode()
        self._dir_end = aetcd.utils.prefix_range_end(self._dir)
        self._link = _Link(self.endpoints, cfg)
        #: the host the next watch connection tries first
        self._watch_index = 0

    # -- keys and values ---------------------------------------------------------------------
    def _full(self, key: str) -> bytes:
        return self._dir + key.encode()

    def _relative(self, raw: bytes) -> str | None:
        try:
            return raw[len(self._dir):].decode()
        except UnicodeDecodeError:
            log.warning("%s: skipping key %r: not UTF-8", self.where, raw)
            return None

    def _value(self, key: str, raw: bytes) -> dict[str, Any] | None:
        """The JSON object stored at ``key``, or None for anything else (logged)."""
        try:
            value = _decode(raw) if raw else None
        except msgspec.DecodeError:
            value = None
        if isinstance(value, dict):
            return value
        # APISIX's directory placeholders ("/apisix/routes" = "init_dir" or empty) are
        # expected; anything else is somebody else's data or a broken write
        level = logging.DEBUG if "/" not in key or not raw else logging.WARNING
        log.log(level, "%s: skipping %s: value is not a JSON object (%r)",
                self.where, key, raw[:40])
        return None

    # -- calls -------------------------------------------------------------------------------
    async def _call(self, what: str, fn: Callable[[_Client, float], Awaitable[T]], *,
                    idempotent: bool = True) -> T:
        """Run ``fn(client, remaining)`` against the current host within ``cfg.timeout``,
        failing over to the next hosts when one cannot be reached.

        A call that timed out after it was sent is only retried when ``idempotent``: a
        commit may have been applied, and re-running it could report a false Conflict."""
        deadline = time.monotonic() + self.cfg.timeout
        problems: list[str] = []
        token_retried = False
        tried = 0
        for _ in range(len(self.endpoints) + 1):     # every host once, plus one re-auth
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            client: _Client | None = None
            sent = False
            try:
                # a host that never answers gets its share of the time, not all of it
                share = remaining / max(1, len(self.endpoints) - tried)
                client = await asyncio.wait_for(self._link.get(share), remaining)
                sent = True
                remaining = max(0.001, deadline - time.monotonic())
                return await asyncio.wait_for(fn(client, remaining), remaining)
            except (StoreError, ConfigError):
                raise
            except Exception as e:  # noqa: BLE001 -- classified: retried or StoreError
                kind, detail = _classify(e)
                url = self.endpoints[self._link.index].url if client is None \
                    else client.endpoint.url
                if kind == _TOKEN and not token_retried:
                    token_retried = True                # re-authenticate, same host
                    await self._link.drop(client, next_host=False)
                    continue
                if kind == _UNREACHABLE or (kind == _TIMEOUT and (idempotent or not sent)):
                    tried += 1
                    if f"{url}: {detail}" not in problems:
                        problems.append(f"{url}: {detail}")
                    await self._link.drop(client, next_host=True)
                    continue
                if kind == _TIMEOUT:
                    await self._link.drop(client, next_host=True)
                    raise StoreError(f"{self.where}: {what} timed out after "
                                     f"{self.cfg.timeout:g}s; it may or may not have been "
                                     "applied") from None
                if kind == _COMPACTED:
                    raise _Compacted(detail) from None
                raise StoreError(f"{self.where}: {what} failed: {detail}") from None
        if not problems:
            problems.append(f"no answer within {self.cfg.timeout:g}s")
        raise StoreError(f"{self.where} unreachable ({what}): {'; '.join(problems)}")

    # -- load --------------------------------------------------------------------------------
    async def load(self) -> tuple[dict[str, Item], int]:
        for _ in range(LOAD_ATTEMPTS):
            try:
                return await self._list()
            except _Compacted:
                continue          # compaction overtook the snapshot between pages: start over
        raise StoreError(f"{self.where}: load kept losing its snapshot to compaction")

    async def _list(self) -> tuple[dict[str, Item], int]:
        """All keys under the prefix, paged at one fixed revision (the first page's)."""
        items: dict[str, Item] = {}
        revision = 0
        start = self._dir
        plen = len(self._dir)
        # bounded: every page moves ``start`` past the keys it returned, and etcd says when
        # there are no more
        while True:
            req = rpc.RangeRequest(key=start, range_end=self._dir_end, limit=PAGE_SIZE,
                                   revision=revision)

            async def page(client: _Client, timeout: float,
                           req: rpc.RangeRequest = req) -> Any:
                return await client.kvstub.Range(req, timeout=timeout,
                                                 metadata=client.metadata)

            resp = await self._call("load", page)
            if revision == 0:
                revision = resp.header.revision
            # a page decodes into tens of thousands of new containers, none of them garbage;
            # letting the cyclic GC rescan the growing heap meanwhile doubled the time of a
            # 100k-key load.  No await in here, so nothing else runs with the GC paused.
            gc_was_on = gc.isenabled()
            gc.disable()
            try:
                for kv in resp.kvs:
                    try:
                        key = kv.key[plen:].decode()
                    except UnicodeDecodeError:
                        log.warning("%s: skipping key %r: not UTF-8", self.where, kv.key)
                        continue
                    value = self._value(key, kv.value)
                    if value is not None:
                        items[key] = Item(value, kv.create_revision, kv.mod_revision,
                                          kv.lease)
            finally:
                if gc_was_on:
                    gc.enable()
            if not resp.more or not resp.kvs:
                return items, revision
            start = resp.kvs[-1].key + b"\0"

    # -- commit ------------------------------------------------------------------------------
    async def commit(self, ops: Sequence[Op]) -> int:
        for op in ops:
            if op.ttl is not None and op.ttl <= 0:
                raise StoreError(f"{op.key}: ttl must be a positive number of seconds")
        payload = [(self._full(op.key), None if op.value is None else _encode(op.value))
                   for op in ops]
        guarded = [(i, op) for i, op in enumerate(ops) if op.expect is not None]
        ttls = sorted({op.ttl for op in ops if op.ttl is not None and op.value is not None})
        granted: list[int] = []

        async def txn(client: _Client, timeout: float) -> Any:
            leases: dict[int, int] = {}
            granted.clear()               # a failed earlier attempt's leases just expire
            for ttl in ttls:              # leases cannot be granted inside a transaction
                lease = await client.lease(ttl)
                leases[ttl] = lease.id
                granted.append(lease.id)
            compare = []
            for i, op in guarded:
                key = payload[i][0]
                if op.expect == 0:
                    compare.append((client.transactions.create(key) == 0).build_message())
                else:
                    compare.append((client.transactions.mod(key) == op.expect).build_message())
            # etcd refuses a key twice in one txn: the last write to a key wins, as it
            # would applied in order
            last = {key: i for i, (key, _) in enumerate(payload)}
            success = []
            for i, ((key, raw), op) in enumerate(zip(payload, ops, strict=False)):
                if last[key] != i:
                    continue
                if raw is None:
                    success.append(rpc.RequestOp(
                        request_delete_range=rpc.DeleteRangeRequest(key=key)))
                else:
                    lease_id = leases.get(op.ttl, 0) if op.ttl is not None else 0
                    success.append(rpc.RequestOp(
                        request_put=rpc.PutRequest(key=key, value=raw, lease=lease_id)))
            # on failure, read the guarded keys back so we can name the one that moved
            failure = [rpc.RequestOp(request_range=rpc.RangeRequest(key=payload[i][0]))
                       for i, _ in guarded]
            req = rpc.TxnRequest(compare=compare, success=success, failure=failure)
            return await client.kvstub.Txn(req, timeout=timeout, metadata=client.metadata)

        # leases are revoked only after a Conflict, the one outcome known not to have
        # applied: after a timeout the keys may exist and must live out their ttl
        resp = await self._call("commit", txn, idempotent=False)
        if resp.succeeded:
            return int(resp.header.revision)
        await self._revoke(granted)
        raise Conflict(self._conflicting(guarded, resp))

    @staticmethod
    def _conflicting(guarded: list[tuple[int, Op]], resp: Any) -> str:
        """The first guarded key whose compare failed, from the failure branch's reads."""
        for (_, op), r in zip(guarded, resp.responses, strict=False):
            kvs = r.response_range.kvs
            if op.expect == 0:
                if kvs:
                    return op.key
            elif not kvs or kvs[0].mod_revision != op.expect:
                return op.key
        return guarded[0][1].key if guarded else ""

    async def _revoke(self, leases: list[int]) -> None:
        """Best effort: an unused lease would expire by itself after its ttl anyway."""
        client = self._link.client
        for lease_id in leases:
            if client is None:
                return
            try:
                await asyncio.wait_for(client.revoke_lease(lease_id),
                                       min(self.cfg.timeout, 2.0))
            except Exception as e:  # noqa: BLE001 -- best effort, the ttl reclaims it
                log.debug("%s: revoking lease %x: %r", self.where, lease_id, e)
                return

    # -- watch -------------------------------------------------------------------------------
    async def watch(self, revision: int, sink: WatchSink, stop: asyncio.Event) -> None:
        if stop.is_set():
            return
        runner = asyncio.ensure_future(self._watch_loop(revision, sink, stop))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            runner.cancel()
            stopper.cancel()
            done = await asyncio.gather(runner, stopper, return_exceptions=True)
        if isinstance(done[0], Exception):
            log.error("%s: watch ended unexpectedly: %r", self.where, done[0])

    async def _watch_loop(self, revision: int, sink: WatchSink, stop: asyncio.Event) -> None:
        """Watch until cancelled (``watch`` cancels it when ``stop`` is set).

        ``position`` is the last revision the sink has seen; every (re)connect resumes at
        ``position + 1``, so nothing is missed or delivered twice.  Each turn of the loop
        either streams until something breaks, or sleeps a back-off delay first."""
        cursor = _Cursor(revision)
        need_reset = False
        down = False
        delay = self.backoff_initial
        #: compactions met in a row with nothing delivered in between: the first re-lists at
        #: once, more (history compacted faster than we can list it) back off like errors
        streak = 0

        def back_up() -> None:
            nonlocal down, delay
            delay = self.backoff_initial
            if down:
                down = False
                log.warning("%s: reachable again; watching from revision %d",
                            self.where, cursor.position + 1)
                _tell_status(sink, True, "")

        while not stop.is_set():
            client: _Client | None = None
            try:
                if need_reset:
                    items, rev = await self.load()
                    try:
                        sink.reset(items, rev)
                    except Exception as e:
                        raise _SinkFailed(repr(e)) from e
                    cursor.position, need_reset = rev, False
                client = await self._watch_client()
                batches = cursor.batches
                await self._stream(client, cursor, sink, back_up)
                need_reset = True                # _stream returns only on a compaction
                streak = 0 if cursor.batches != batches else streak + 1
                log.warning("%s: watch position %d was compacted; re-listing",
                            self.where, cursor.position + 1)
                if streak <= 1:
                    continue
            except _SinkFailed as e:
                log.error("%s: the config sink failed (%s); resynchronising with a full "
                          "reset", self.where, e, exc_info=e.__cause__)
                need_reset = True
            except Exception as e:  # noqa: BLE001 -- the watch never raises: retry
                if isinstance(e, StoreError):         # from the re-list: says where already
                    reason = str(e)
                else:
                    detail = str(e) if isinstance(e, _WatchLost) else _classify(e)[1]
                    reason = f"{self.where}: {detail}"
                    # this member failed us: the next attempt tries the next one
                    self._watch_index = (self._watch_index + 1) % len(self.endpoints)
                if not down:
                    down = True
                    log.warning("%s; serving the last configuration and retrying", reason)
                    _tell_status(sink, False, reason)
                else:
                    log.debug("%s (retrying in %.1fs)", reason, delay)
            finally:
                await _close_quietly(client)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.backoff_cap)

    async def _watch_client(self) -> _Client:
        """A dedicated connection for the watch stream, so stream failures and reconnects
        never disturb ``commit``/``load`` calls (and vice versa)."""
        client = _Client(self.endpoints[self._watch_index], self.cfg)
        try:
            await asyncio.wait_for(client.connect(self.cfg.timeout), self.cfg.timeout)
        except BaseException:
            await _close_quietly(client)
            raise
        return client

    async def _stream(self, client: _Client, cursor: _Cursor, sink: WatchSink,
                      on_created: Callable[[], None]) -> None:
        """Run one watch stream from ``cursor.position + 1``, advancing the cursor as
        batches are delivered.  Returns when the history it needs was compacted; raises
        when the stream breaks."""
        stub = rpc.WatchStub(client.channel)
        call = stub.Watch(metadata=client.metadata)
        try:
            create = rpc.WatchCreateRequest(key=self._dir, range_end=self._dir_end,
                                            start_revision=cursor.position + 1,
                                            progress_notify=True, fragment=True)
            timeout = self.cfg.timeout
            await asyncio.wait_for(call.write(rpc.WatchRequest(create_request=create)), timeout)
            first = await asyncio.wait_for(call.read(), timeout)
            if first is grpc.aio.EOF:
                raise _WatchLost(await self._ended(call))
            if first.compact_revision:
                return
            if first.canceled:
                raise _WatchLost(f"watch refused: {first.cancel_reason or 'canceled'}"
                                 f"{_hint(first.cancel_reason)}")
            on_created()
            pending: list[Event] = []
            last = cursor.position
            # bounded by the connection: an idle stream is normal, a dead one errors out
            # within the keepalive timeout, and ``watch`` cancels us when asked to stop
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    raise _WatchLost(await self._ended(call))
                if resp.compact_revision:
                    return
                if resp.canceled:
                    raise _WatchLost(f"watch canceled: {resp.cancel_reason or 'by etcd'}")
                for ev in resp.events:
                    kv = ev.kv
                    last = kv.mod_revision
                    key = self._relative(kv.key)
                    if key is None:
                        continue
                    value = None
                    if ev.type == rpc.Event.PUT:
                        value = self._value(key, kv.value)
                    created = kv.create_revision if value is not None else 0
                    pending.append(Event(key, value, created, kv.mod_revision))
                if resp.fragment:
                    continue                        # the rest of this revision follows
                if pending:
                    batch, pending = pending, []
                    try:
                        sink.events(batch, last)
                    except Exception as e:
                        raise _SinkFailed(repr(e)) from e
                    cursor.batches += 1
                elif not resp.events and not resp.created:
                    # progress notification: etcd sends them only to watchers that are in
                    # sync, so nothing below the header revision is still to come
                    last = max(last, resp.header.revision)
                cursor.position = last
        finally:
            call.cancel()

    @staticmethod
    async def _ended(call: Any) -> str:
        try:
            code = await asyncio.wait_for(call.code(), 1.0)
            details = await asyncio.wait_for(call.details(), 1.0)
            return f"watch stream ended: {details or code}"
        except Exception:  # noqa: BLE001 -- only decorates a message
            return "watch stream ended"

    async def close(self) -> None:
        await self._link.close()


def _tell_status(sink: WatchSink, ok: bool, detail: str) -> None:
    """Report reachability; a failing sink must not end the watch (it never raises)."""
    try:
        sink.status(ok, detail)
    except Exception:
        log.exception("etcd: the config sink failed on status(%s)", ok)


@dataclass(slots=True)
class _Cursor:
    """The last revision the sink has seen (shared by the watch loop and its streams)."""

    position: int
    #: batches delivered so far
    batches: int = 0


class _Compacted(StoreError):
    """A read at a fixed revision found it compacted (internal to ``load``)."""
