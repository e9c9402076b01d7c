"""DNS discovery (APISIX ``discovery/dns``): ``service_name`` is ``host[:port]``.

The name is resolved through ``discovery.dns.servers`` (required, as in APISIX;
``resolv_conf`` is accepted and not read) in
``discovery.dns.order`` (default ``last, SRV, A, AAAA, CNAME``: the type that answered last
time first).  An SRV answer gives each target's address, the record's port (unless the
service name has one), weight and priority (APISIX stores ``-priority``: a lower SRV
priority is chosen first).  A and AAAA records give weight 1 and the service name's port
(none: the upstream scheme's).  The answer is asked again when its TTL runs out (at least
one second apart).  A name that does not exist (NXDOMAIN, or no record of any type) has no
nodes; a resolver that does not answer is a failure (the last nodes are kept).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from ..model.upstream import split_addr
from .base import DiscoveryError, DNode, Registry
from .config import DnsConf

#: the shortest time between two questions for one name (a TTL of 0 is common locally)
MIN_TTL = 1.0
#: how long a name that does not exist waits before it is asked again
NEGATIVE_TTL = 5.0
#: one question's bound (all the resolvers, retries included)
LIFETIME = 5.0


class DnsRegistry(Registry):
    kind = "dns"

    def __init__(self, conf: DnsConf) -> None:
        super().__init__(conf)
        self.conf: DnsConf = conf
        r = dns.asyncresolver.Resolver(configure=False)
        r.nameservers = [_nameserver(s) for s in conf.servers]
        r.lifetime = LIFETIME
        r.timeout = 2.0
        r.cache = None                      # the TTL is ours to follow
        self.resolver = r
        self.order: list[str] = [t for t in conf.order if t != "CNAME"]  # A/AAAA follow them
        #: the type that answered each name last ("last" in the order)
        self.last: dict[str, str] = {}

    def check(self, service_name: str, args: dict[str, Any]) -> str | None:
        try:
            split_addr(service_name)
        except ValueError as e:
            return str(e)
        return None

    async def follow(self, service_name: str, args: dict[str, Any]
                     ) -> AsyncIterator[list[DNode]]:
        host, port = split_addr(service_name)
        while True:
            nodes, ttl = await self.resolve(host, port)
            yield nodes
            await asyncio.sleep(ttl)

    async def resolve(self, host: str, port: int | None) -> tuple[list[DNode], float]:
        """(nodes, seconds until they should be asked again)."""
        order = list(self.order)
        if "last" in order:
            order.remove("last")
            prev = self.last.get(host)
            if prev is not None:
                order.remove(prev)
                order.insert(0, prev)
        for qtype in order:
            try:
                ans = await self.resolver.resolve(host, qtype, search=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.resolver.NoNameservers as e:
                raise DiscoveryError(f"dns: no server answered for {host} {qtype}: "
                                     f"{e}") from None
            except dns.exception.Timeout:
                raise DiscoveryError(f"dns: {host} {qtype} timed out") from None
            if ans.rrset is None:
                continue
            self.last[host] = qtype
            ttl = float(ans.rrset.ttl)
            if qtype == "SRV":
                nodes, ttl2 = await self._srv(ans, port)
                ttl = min(ttl, ttl2)
            else:
                nodes = [(r.address, port, 1, 0) for r in ans]
            nodes.sort(key=lambda n: (n[0], n[1] or 0))   # servers rotate records
            return nodes, max(ttl, MIN_TTL)
        return [], NEGATIVE_TTL

    async def _srv(self, ans: Any, port: int | None) -> tuple[list[DNode], float]:
        nodes: list[DNode] = []
        ttl = float("inf")
        for r in ans:
            target = r.target.to_text(omit_final_dot=True)
            addrs: list[str] = []
            for qtype in ("A", "AAAA"):
                try:
                    got = await self.resolver.resolve(target, qtype, search=False)
                except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                    continue
                except (dns.resolver.NoNameservers, dns.exception.Timeout) as e:
                    raise DiscoveryError(f"dns: SRV target {target}: {e}") from None
                if got.rrset is not None:
                    ttl = min(ttl, float(got.rrset.ttl))
                    addrs = [a.address for a in got]
                    break
            if not addrs:
                continue
            # APISIX takes the SRV port unless it is 0 or the service name has one
            node_port = port if port is not None else (r.port or None)
            nodes.append((addrs[0], node_port, int(r.weight), -int(r.priority)))
        return nodes, ttl


def _nameserver(addr: str) -> dns.nameserver.Do53Nameserver:
    host, port = split_addr(addr)
    return dns.nameserver.Do53Nameserver(host, port or 53)
