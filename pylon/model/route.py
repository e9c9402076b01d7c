"""Route and service resources (APISIX v3 ``route`` and ``service`` schemas)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from msgspec import Meta

from .common import Base, Desc, Host, Id, Labels, Name, Plugins, Timeout, Timestamp
from .upstream import Upstream

Method = Literal["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT",
                 "TRACE", "PURGE"]
Uri = Annotated[str, Meta(min_length=1, max_length=4096)]


def _check_addrs(addrs: list[str], field: str) -> None:
    for a in addrs:
        try:
            ipaddress.ip_network(a, strict=False)
        except ValueError:
            raise ValueError(f"{field}: {a!r} is not an IP address or CIDR") from None


class Route(Base, frozen=True):
    id: Id | None = None
    name: Name | None = None
    desc: Desc | None = None
    labels: Labels | None = None
    uri: Uri | None = None
    uris: Annotated[list[Uri], Meta(min_length=1)] | None = None
    host: Host | None = None
    hosts: Annotated[list[Host], Meta(min_length=1)] | None = None
    methods: list[Method] | None = None
    remote_addr: str | None = None
    remote_addrs: Annotated[list[str], Meta(min_length=1)] | None = None
    vars: list[object] | None = None
    priority: int = 0
    plugins: Plugins | None = None
    plugin_config_id: Id | None = None
    upstream: Upstream | None = None
    upstream_id: Id | None = None
    service_id: Id | None = None
    timeout: Timeout | None = None
    enable_websocket: bool | None = None
    status: Literal[0, 1] = 1
    filter_func: str | None = None
    script: str | None = None
    create_time: Timestamp | None = None
    update_time: Timestamp | None = None

    def __post_init__(self) -> None:
        if self.uri is None and self.uris is None:
            raise ValueError("one of uri or uris is required")
        if self.uri is not None and self.uris is not None:
            raise ValueError("set uri or uris, not both")
        if self.host is not None and self.hosts is not None:
            raise ValueError("set host or hosts, not both")
        if self.remote_addr is not None and self.remote_addrs is not None:
            raise ValueError("set remote_addr or remote_addrs, not both")
        if self.filter_func is not None or self.script is not None:
            raise ValueError("filter_func and script are Lua and not supported; "
                             "use vars expressions or a plugin")
        _check_addrs(self.all_remote_addrs(), "remote_addrs")
        if self.methods is not None and len(set(self.methods)) != len(self.methods):
            raise ValueError("methods must be unique")

    def all_uris(self) -> list[str]:
        return [self.uri] if self.uri is not None else list(self.uris or ())

    def all_hosts(self) -> list[str]:
        return [self.host] if self.host is not None else list(self.hosts or ())

    def all_remote_addrs(self) -> list[str]:
        return [self.remote_addr] if self.remote_addr is not None else list(self.remote_addrs or ())


class Service(Base, frozen=True):
    id: Id | None = None
    name: Name | None = None
    desc: Desc | None = None
    labels: Labels | None = None
    upstream: Upstream | None = None
    upstream_id: Id | None = None
    plugins: Plugins | None = None
    hosts: Annotated[list[Host], Meta(min_length=1)] | None = None
    enable_websocket: bool | None = None
    script: str | None = None
    create_time: Timestamp | None = None
    update_time: Timestamp | None = None

    def __post_init__(self) -> None:
        if self.script is not None:
            raise ValueError("script is Lua and not supported")
