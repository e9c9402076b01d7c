"""The node config's ``discovery:`` section, with APISIX's keys and defaults per registry
(``apisix/discovery/<type>/schema.lua``).  Times in ``timeout`` are milliseconds as in
APISIX, except consul's ``wait`` (seconds, a Consul blocking query's ``wait``)."""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from ..errors import ConfigError
from ..model.upstream import DISCOVERY_TYPES as TYPES


class _C(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=False):
    pass


class DnsConf(_C, frozen=True):
    #: resolvers, "ip" or "ip:port" (APISIX requires at least one)
    servers: Annotated[list[str], Meta(min_length=1)]
    resolv_conf: str | None = None
    order: list[Literal["last", "SRV", "A", "AAAA", "CNAME"]] = msgspec.field(
        default_factory=lambda: ["last", "SRV", "A", "AAAA", "CNAME"])


class ConsulTimeout(_C, frozen=True):
    connect: Annotated[int, Meta(ge=1)] = 2000
    read: Annotated[int, Meta(ge=1)] = 2000
    wait: Annotated[int, Meta(ge=1)] = 60


class DefaultService(_C, frozen=True):
    host: str
    port: Annotated[int, Meta(ge=1, le=65535)]
    metadata: dict[str, Any] | None = None


class DumpConf(_C, frozen=True):
    path: Annotated[str, Meta(min_length=1)] = "logs/consul.dump"
    load_on_init: bool = True
    expire: Annotated[int, Meta(ge=0)] = 0


class ConsulConf(_C, frozen=True):
    servers: Annotated[list[str], Meta(min_length=1)]
    token: str = ""
    skip_services: list[str] = msgspec.field(default_factory=list)
    timeout: ConsulTimeout = ConsulTimeout()
    weight: Annotated[int, Meta(ge=1)] = 1
    fetch_interval: Annotated[int, Meta(ge=1)] = 3
    keepalive: bool = True
    default_service: DefaultService | None = None
    dump: DumpConf | None = None
    sort_type: Literal["origin", "host_sort", "port_sort", "combine_sort"] = "origin"


class ConsulKvConf(_C, frozen=True):
    servers: Annotated[list[str], Meta(min_length=1)]
    token: str = ""
    prefix: str = "upstreams"
    weight: Annotated[int, Meta(ge=1)] = 1
    timeout: ConsulTimeout = ConsulTimeout()
    skip_keys: list[str] = msgspec.field(default_factory=list)
    dump: DumpConf | None = None
    fetch_interval: Annotated[int, Meta(ge=1)] = 3
    keepalive: bool = True


class HttpTimeout(_C, frozen=True):
    connect: Annotated[int, Meta(ge=1)] = 2000
    send: Annotated[int, Meta(ge=1)] = 2000
    read: Annotated[int, Meta(ge=1)] = 5000


class NacosConf(_C, frozen=True):
    #: "http://[user:password@]host:port" (credentials: Nacos auth, a login for a token)
    host: Annotated[list[str], Meta(min_length=1)]
    prefix: Annotated[str, Meta(pattern=r"^[\/a-zA-Z0-9-_.]+$")] = "/nacos/v1/"
    fetch_interval: Annotated[int, Meta(ge=1)] = 30
    weight: Annotated[int, Meta(ge=1)] = 100
    timeout: HttpTimeout = HttpTimeout()
    access_key: str = ""
    secret_key: str = ""


class EurekaConf(_C, frozen=True):
    host: Annotated[list[str], Meta(min_length=1)]
    prefix: str = "/eureka/"
    fetch_interval: Annotated[int, Meta(ge=1)] = 30
    weight: Annotated[int, Meta(ge=0)] = 100
    timeout: HttpTimeout = HttpTimeout()


class K8sService(_C, frozen=True):
    schema: Literal["http", "https"] = "https"
    host: str = "${KUBERNETES_SERVICE_HOST}"
    port: str | int = "${KUBERNETES_SERVICE_PORT}"


class K8sClient(_C, frozen=True):
    token: str | None = None
    token_file: str | None = None


class K8sSelector(_C, frozen=True):
    equal: str | None = None
    not_equal: str | None = None
    match: list[str] | None = None
    not_match: list[str] | None = None


class K8sCluster(_C, frozen=True):
    #: a cluster's id (several clusters: service_name is "id/namespace/name:port")
    id: Annotated[str, Meta(pattern=r"^[a-z0-9]{1,8}$")] | None = None
    service: K8sService = K8sService()
    client: K8sClient = K8sClient(
        token_file="/var/run/secrets/kubernetes.io/serviceaccount/token")
    namespace_selector: K8sSelector | None = None
    label_selector: str | None = None
    default_weight: Annotated[int, Meta(ge=0)] = 50
    shared_size: str = "1m"
    watch_endpoint_slices: bool = False


CONFS: dict[str, type[_C]] = {
    "dns": DnsConf, "consul": ConsulConf, "consul_kv": ConsulKvConf, "nacos": NacosConf,
    "eureka": EurekaConf,
}
assert set(CONFS) | {"kubernetes"} == set(TYPES)

Conf = DnsConf | ConsulConf | ConsulKvConf | NacosConf | EurekaConf | list[K8sCluster]


def expand_env(value: str) -> str:
    """``${VAR}`` replaced by the environment's value (APISIX's kubernetes host/port/token);
    an unset variable is an error."""
    def one(m: re.Match[str]) -> str:
        got = os.environ.get(m.group(1))
        if got is None:
            raise ConfigError(f"environment variable {m.group(1)} is not set")
        return got
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", one, value)


def parse(raw: Any, path: str = "discovery") -> dict[str, Conf]:
    """The ``discovery:`` section typed; an unknown registry or a bad key is a
    ConfigError with its path."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping of discovery type to its settings", path)
    out: dict[str, Conf] = {}
    for kind, conf in raw.items():
        where = f"{path}.{kind}"
        if kind not in TYPES:
            raise ConfigError(f"unknown discovery type (known: {', '.join(TYPES)})", where)
        typ: Any = list[K8sCluster] if kind == "kubernetes" else CONFS[kind]
        if kind == "kubernetes" and isinstance(conf, dict):
            conf = [conf]
        try:
            got = msgspec.convert(conf, typ)
        except msgspec.ValidationError as e:
            msg, _, at = str(e).partition(" - at `$")
            at = at.rstrip("`").lstrip(".")
            raise ConfigError(msg.replace("`", ""), f"{where}.{at}" if at else where) from None
        if kind in ("consul", "consul_kv"):
            for i, server in enumerate(got.servers):
                if not server.startswith("http://"):
                    raise ConfigError("only support consul http schema address, eg: "
                                      "http://address:port", f"{where}.servers[{i}]")
                if "/" in server[len("http://"):]:
                    raise ConfigError("invalid consul server address, the valid format: "
                                      "http://address:port", f"{where}.servers[{i}]")
        if kind == "kubernetes":
            ids = [c.id for c in got]
            if len(got) > 1 and (None in ids or len(set(ids)) != len(ids)):
                raise ConfigError("several clusters need each a unique id", where)
        out[kind] = got
    return out
