"""Upstream resource (APISIX v3 ``upstream`` schema)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from .common import Base, Desc, Host, Id, Labels, Name, NonNegInt, Port, Timeout, Timestamp

UPSTREAM_SCHEMES = ("http", "https", "grpc", "grpcs", "tcp", "tls", "udp")
DEFAULT_PORTS = {"http": 80, "https": 443, "grpc": 80, "grpcs": 443}
#: the ``discovery_type`` values Pylon implements (``pylon.discovery``), APISIX's names
DISCOVERY_TYPES = ("dns", "consul", "consul_kv", "nacos", "eureka", "kubernetes")


class NodeSpec(Base, frozen=True):
    host: Host
    port: Port | None = None
    weight: Annotated[int, Meta(ge=0)] = 1
    priority: int = 0
    metadata: dict[str, object] | None = None


class KeepalivePool(Base, frozen=True):
    size: Annotated[int, Meta(ge=1)] = 320
    idle_timeout: Annotated[float, Meta(ge=0)] = 60.0
    requests: Annotated[int, Meta(ge=1)] = 1000


class UpstreamTLS(Base, frozen=True):
    client_cert: str | None = None
    client_key: str | None = None
    client_cert_id: Id | None = None
    verify: bool = False

    def __post_init__(self) -> None:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("tls.client_cert and tls.client_key must be set together")
        if self.client_cert_id is not None and self.client_cert is not None:
            raise ValueError("tls.client_cert_id and tls.client_cert: one or the other")


class Upstream(Base, frozen=True):
    id: Id | None = None
    name: Name | None = None
    desc: Desc | None = None
    labels: Labels | None = None
    nodes: list[NodeSpec] | dict[str, Annotated[int, Meta(ge=0)]] | None = None
    type: Literal["roundrobin", "chash", "least_conn", "ewma"] = "roundrobin"
    hash_on: Literal["vars", "header", "cookie", "consumer", "vars_combinations"] = "vars"
    key: str | None = None
    checks: dict[str, object] | None = None
    retries: NonNegInt | None = None
    retry_timeout: Annotated[float, Meta(ge=0)] | None = None
    timeout: Timeout | None = None
    scheme: Literal["http", "https", "grpc", "grpcs", "tcp", "tls", "udp"] = "http"
    pass_host: Literal["pass", "node", "rewrite"] = "pass"
    upstream_host: Host | None = None
    keepalive_pool: KeepalivePool | None = None
    tls: UpstreamTLS | None = None
    discovery_type: str | None = None
    service_name: Annotated[str, Meta(min_length=1, max_length=256)] | None = None
    discovery_args: dict[str, object] | None = None
    create_time: Timestamp | None = None
    update_time: Timestamp | None = None

    def __post_init__(self) -> None:
        if self.service_name is not None:
            # APISIX's schema: oneOf [{required: [nodes]}, {required: [service_name,
            # discovery_type]}], in lua-jsonschema's words (a discovery_type beside nodes
            # and no service_name is accepted and unused, as in APISIX)
            if self.nodes is not None:
                raise ValueError("value should match only one schema, but matches both "
                                 "schemas 1 and 2")
            if self.discovery_type is None or self.service_name is None:
                raise ValueError("value should match only one schema, but matches none")
            if self.discovery_type not in DISCOVERY_TYPES:
                raise ValueError(f"discovery {self.discovery_type} is uninitialized (known: "
                                 f"{', '.join(DISCOVERY_TYPES)})")
        elif self.nodes is None:
            raise ValueError("nodes is required")
        if self.pass_host == "rewrite" and not self.upstream_host:
            raise ValueError("pass_host is 'rewrite' but upstream_host is not set")
        if self.type == "chash" and not self.key and self.hash_on != "consumer":
            raise ValueError("missing key")         # APISIX's words; consumer needs none
        _check_probe_port(self.checks)
        if isinstance(self.nodes, dict):
            for addr in self.nodes:
                split_addr(addr)

    def node_list(self) -> list[NodeSpec]:
        """Nodes in list form; map keys ``host:port`` (port optional) are expanded."""
        if isinstance(self.nodes, dict):
            out = []
            for addr, weight in self.nodes.items():
                host, port = split_addr(addr)
                out.append(NodeSpec(host=host, port=port, weight=weight))
            return out
        return list(self.nodes or ())


def _check_probe_port(checks: dict[str, object] | None) -> None:
    """APISIX's health checker schema: an active probe's port is 1-65535."""
    active = checks.get("active") if isinstance(checks, dict) else None
    port = active.get("port") if isinstance(active, dict) else None
    if port is not None and (not isinstance(port, int) or isinstance(port, bool)
                             or not 1 <= port <= 65535):
        raise ValueError(f"checks.active.port: expected {port} to be within 1..65535")


def split_addr(addr: str) -> tuple[str, int | None]:
    """``host:port``, ``[v6]:port``, ``host`` → (host, port|None); ValueError when malformed."""
    if addr.startswith("["):
        end = addr.find("]")
        if end < 0:
            raise ValueError(f"bad node address {addr!r}")
        host, rest = addr[1:end], addr[end + 1:]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError(f"bad node address {addr!r}")
        port_s = rest[1:]
    elif addr.count(":") == 1:
        host, port_s = addr.split(":")
    else:
        return addr, None
    if not port_s.isdigit() or not 1 <= int(port_s) <= 65535:
        raise ValueError(f"bad port in node address {addr!r}")
    if not host:
        raise ValueError(f"bad node address {addr!r}")
    return host, int(port_s)
