"""HTTP helpers of the registries: addresses with credentials, JSON requests through
``pylon.upstream.client``, and a line stream for watches (Kubernetes ``?watch=true``)."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from ..model.upstream import split_addr
from ..upstream import client
from .base import DiscoveryError, DNode, Registry


def split_hostport(addr: str) -> tuple[str, int]:
    """``host:port`` / ``[v6]:port`` (the port required); ValueError otherwise."""
    host, port = split_addr(addr)
    if port is None:
        raise ValueError(f"no port in {addr!r}")
    return host, port


class Server:
    """A registry address, ``http://[user:password@]host:port[/path]``: the base URL
    without the credentials, and the credentials."""

    __slots__ = ("base", "password", "user")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url if "://" in url else "http://" + url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"bad registry address {url!r}")
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        host = parts.netloc.rpartition("@")[2]
        self.base = f"{parts.scheme}://{host}{parts.path.rstrip('/')}"

    def basic_auth(self) -> dict[str, str]:
        if self.user is None:
            return {}
        raw = f"{self.user}:{self.password or ''}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def get_json(method: str, url: str, what: str, *, timeout: float,
                   headers: Mapping[str, str] | None = None, body: bytes | None = None,
                   ok: tuple[int, ...] = (200,)) -> tuple[int, Any]:
    """(status, decoded JSON body) of one request; a failure, another status or a body that
    is not JSON is a DiscoveryError naming ``what``."""
    try:
        resp = await client.request(method, url, headers=headers, body=body,
                                    timeout=timeout, verify=False)
    except client.HTTPError as e:
        raise DiscoveryError(f"{what}: {e.message}") from None
    if resp.status not in ok:
        raise DiscoveryError(f"{what}: {method} {url.split('?')[0]} answered {resp.status}: "
                             f"{resp.text[:200]}")
    if resp.status != 200:
        return resp.status, None
    try:
        return resp.status, resp.json()
    except ValueError:
        raise DiscoveryError(f"{what}: the answer is not JSON") from None


async def stream_lines(url: str, headers: Mapping[str, str], *, connect_timeout: float,
                       idle_timeout: float, verify: bool = False
                       ) -> AsyncIterator[bytes]:
    """The lines of a long response (a watch), each as it arrives; every read bounded by
    ``idle_timeout``.  A status other than 200 is a DiscoveryError."""
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    host = parts.hostname or ""
    ctx: ssl.SSLContext | None = None
    if tls:
        ctx = ssl.create_default_context()
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(connect_timeout):
            reader, writer = await asyncio.open_connection(host, port, ssl=ctx,
                                                           limit=1 << 24)
    except (OSError, TimeoutError) as e:
        raise DiscoveryError(f"{parts.netloc}: cannot connect: {e or 'timed out'}") from None
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close",
                 "Accept: application/json", *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        async with asyncio.timeout(idle_timeout):
            head = await reader.readuntil(b"\r\n\r\n")
        status_line, _, rest = head.decode("latin-1").partition("\r\n")
        fields = status_line.split(" ", 2)
        status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
        hdrs = {k.strip().lower(): v.strip() for k, _, v in
                (h.partition(":") for h in rest.split("\r\n") if h)}
        chunked = "chunked" in hdrs.get("transfer-encoding", "").lower()
        if status != 200:
            raise DiscoveryError(f"GET {parts.path} answered {status}")
        buf = b""
        while True:
            async with asyncio.timeout(idle_timeout):
                if chunked:
                    size_line = await reader.readuntil(b"\r\n")
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        break
                    data = await reader.readexactly(size + 2)
                    data = data[:-2]
                else:
                    data = await reader.read(65536)
                    if not data:
                        break
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    yield line
        if buf.strip():
            yield buf
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
        raise DiscoveryError(f"{parts.netloc}: watch stream broken: {e}") from None
    except TimeoutError:
        raise DiscoveryError(f"{parts.netloc}: no data for {idle_timeout:g} s") from None
    finally:
        writer.close()


def decode_line(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        raise DiscoveryError("watch event is not JSON") from None


class Polled(Registry):
    """A registry asked again every ``fetch_interval`` seconds (Nacos, Eureka): its
    ``host`` list tried in turn, moving to the next one after a failure."""

    def __init__(self, conf: Any) -> None:
        super().__init__(conf)
        self.hosts = [Server(h) for h in conf.host]
        self.server = 0

    def _host(self) -> Server:
        return self.hosts[self.server % len(self.hosts)]

    def _timeout(self) -> float:
        """The whole request's bound, seconds (``timeout`` is in milliseconds)."""
        t = self.conf.timeout
        return float(t.connect + t.send + t.read) / 1000

    def _prefix(self) -> str:
        p = self.conf.prefix.strip("/")
        return "/" + p + "/" if p else "/"

    async def fetch(self, service_name: str, args: dict[str, Any]) -> list[DNode]:
        """The service's nodes now (a failure raises ``DiscoveryError``)."""
        raise NotImplementedError

    async def follow(self, service_name: str, args: dict[str, Any]
                     ) -> AsyncIterator[list[DNode]]:
        while True:
            yield await self.fetch(service_name, args)
            await asyncio.sleep(self.conf.fetch_interval)
