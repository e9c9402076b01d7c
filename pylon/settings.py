"""Node configuration (``conf/config.yaml``), declared once.

Names follow APISIX's ``config.yaml`` wherever APISIX has the setting, so a migrating user
recognises them: ``apisix.node_listen`` (``pylon:`` is the same section under our name),
``apisix.router.http``, ``deployment.role_*.config_provider``, ``nginx_config.http.*``
timeouts and sizes, ``nginx_config.worker_shutdown_timeout``.  Unknown keys are reported as
warnings (APISIX files carry many settings that have no meaning here) rather than errors.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from .errors import ConfigError

#: ``apisix.router.http``: the router kinds (``pylon.routing.router.KINDS``)
RouterKind = Literal["radixtree_host_uri", "radixtree_uri", "radixtree_uri_with_parameter"]
DEFAULT_LOG_FORMAT = (
    '$remote_addr - $remote_user [$time_local] $http_host "$request" $status '
    '$body_bytes_sent $request_time "$http_referer" "$http_user_agent" $upstream_addr '
    '$upstream_status $upstream_response_time route=$route_id detail=$pylon_detail')


#: APISIX's ``stream_plugins`` default (conf/config-default.yaml)
DEFAULT_STREAM_PLUGINS = ("ip-restriction", "limit-conn", "mqtt-proxy", "syslog")


class _S(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=False):
    pass


class Listen(_S, frozen=True):
    port: Annotated[int, Meta(ge=0, le=65535)]
    ip: str = "0.0.0.0"
    enable_http2: bool = False


class RouterSection(_S, frozen=True):
    http: RouterKind = "radixtree_host_uri"


class DataEncryption(_S, frozen=True):
    enable_encrypt_fields: bool = True
    keyring: list[str] | None = None


class ServerLimits(_S, frozen=True):
    """Pylon: bounds of the master's own HTTP servers (APISIX has none: its Admin API port
    shares nginx's ``http`` settings), as ``nginx_config.http`` bounds the proxy port.  In
    ``deployment.admin`` for the Admin API, in ``apisix.control`` for the Control API and
    the Prometheus export server."""

    #: a whole request head (not one read), from the connection's start or its first byte
    #: after an answer; later: 408 and the connection closes
    client_header_timeout: str | float | int = "10s"
    #: the longest pause between two reads of a request body (408)
    client_body_timeout: str | float | int = "10s"
    #: an idle keep-alive connection closes after this (0: no keep-alive)
    keepalive_timeout: str | float | int = "60s"
    #: connections open at once; when full, the one that waited longest for its client
    #: (idle, or with an unfinished request) is closed to let a new one in
    max_connections: Annotated[int, Meta(ge=1)] = 256


class ControlListen(ServerLimits, frozen=True):
    """``apisix.control``: the Control API (``/v1/healthcheck``), served by the master."""

    ip: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 9090
    router: str | None = None          # APISIX: plugin control API matching (no meaning here)


class ProxyCacheZone(_S, frozen=True):
    """A ``proxy-cache`` zone: with ``disk_path`` a disk zone (files under the path, at most
    ``disk_size``), without one a memory zone (shared by the workers, at most
    ``memory_size``)."""

    name: Annotated[str, Meta(min_length=1)]
    memory_size: str | int = "50m"
    disk_size: str | int | None = None
    disk_path: str | None = None
    cache_levels: Annotated[str, Meta(pattern=r"^[12](:[12]){0,2}$")] = "1:2"


def _default_cache_zones() -> list[ProxyCacheZone]:
    return [ProxyCacheZone(name="disk_cache_one", disk_size="1G",
                           disk_path="/tmp/disk_cache_one"),
            ProxyCacheZone(name="memory_cache")]


class ProxyCacheSection(_S, frozen=True):
    """``apisix.proxy_cache`` (APISIX's defaults): ``cache_ttl`` is the disk zones' TTL
    when the response carries no ``Cache-Control``/``Expires``."""

    cache_ttl: str | float | int = "10s"
    zones: list[ProxyCacheZone] = msgspec.field(default_factory=_default_cache_zones)


class SslListen(_S, frozen=True):
    port: Annotated[int, Meta(ge=0, le=65535)]
    ip: str = "0.0.0.0"
    #: None: the section's ``enable_http2``
    enable_http2: bool | None = None


class SslSection(_S, frozen=True):
    """``apisix.ssl``: the TLS listeners and what they share (docs/tls.md).  Unlike APISIX,
    no TLS port is opened unless ``listen`` names one."""

    enable: bool = True
    listen: list[Annotated[int, Meta(ge=0, le=65535)] | SslListen] = msgspec.field(
        default_factory=list)
    #: APISIX's older spelling: HTTP/2 (ALPN h2) on the listeners that do not say
    enable_http2: bool = False
    ssl_protocols: str = "TLSv1.2 TLSv1.3"
    ssl_ciphers: str | None = None
    ssl_session_tickets: bool = False
    #: the CA bundle upstream TLS verifies against (``tls.verify``): a path, or "system"
    ssl_trusted_certificate: str = "system"
    #: the name looked up when a client sends no SNI
    fallback_sni: str | None = None
    #: Pylon: a certificate served when no ssl object matches (paths; else the handshake
    #: fails, as in APISIX)
    ssl_cert: str | None = None
    ssl_cert_key: str | None = None


class StreamListen(_S, frozen=True):
    """``apisix.stream_proxy.tcp`` item in its mapping form: ``addr`` a port or
    ``"ip:port"``, ``tls`` terminates TLS with the ``ssls`` objects."""

    addr: Annotated[int, Meta(ge=1, le=65535)] | str
    tls: bool = False


class StreamProxy(_S, frozen=True):
    """``apisix.stream_proxy`` (docs/stream.md): the TCP and UDP listeners of the stream
    proxy, each a port, ``"ip:port"`` or (TCP) ``{addr, tls}``."""

    tcp: list[Annotated[int, Meta(ge=1, le=65535)] | str | StreamListen] = msgspec.field(
        default_factory=list)
    udp: list[Annotated[int, Meta(ge=1, le=65535)] | str] = msgspec.field(
        default_factory=list)


class NodeSection(_S, frozen=True):
    #: ``http``, ``stream`` or ``http&stream`` (APISIX): which proxies this node runs
    proxy_mode: Literal["http", "stream", "http&stream"] = "http"
    stream_proxy: StreamProxy | None = None
    node_listen: list[Annotated[int, Meta(ge=0, le=65535)] | Listen] = msgspec.field(
        default_factory=lambda: [9080])
    workers: Annotated[int, Meta(ge=1, le=512)] | Literal["auto"] = "auto"
    router: RouterKind | RouterSection = "radixtree_host_uri"
    enable_ipv6: bool = False
    enable_admin: bool = True
    enable_control: bool = True
    control: ControlListen = ControlListen()
    data_encryption: DataEncryption = DataEncryption()
    #: Pylon: directories of custom plugin modules (one ``.py`` file per plugin)
    extra_plugin_dirs: list[str] = msgspec.field(default_factory=list)
    #: ``X-APISIX-Upstream-Status`` on every proxied response, not only 5xx ones
    show_upstream_status_in_response_header: bool = False
    #: MB of request body read to match ``post_arg.*`` route vars (0: no own limit)
    max_post_args_readable_size: Annotated[int, Meta(ge=0)] = 64
    #: Pylon: refuse jwt-auth HMAC secrets shorter than RFC 7518 asks (default: load them
    #: with a warning, as APISIX accepts them)
    reject_short_jwt_secrets: bool = False
    proxy_cache: ProxyCacheSection = ProxyCacheSection()
    ssl: SslSection = SslSection()


class AdminKeyRow(_S, frozen=True):
    key: Annotated[str, Meta(min_length=1)]
    name: str = "admin"
    role: Literal["admin", "viewer"] = "admin"


class AdminListen(_S, frozen=True):
    ip: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 9180


class AdminSection(ServerLimits, frozen=True):
    admin_listen: AdminListen = AdminListen()
    admin_key: list[AdminKeyRow] | None = None
    admin_key_required: bool = True
    allow_admin: list[str] | None = None
    #: Pylon: every admin write (key name, method, resource, before/after) as JSON lines;
    #: "" or null turns it off
    audit_log: str | None = "logs/admin-audit.log"
    #: Pylon: what a viewer key reads in place of secrets (declared plugin fields, ...):
    #: "******" (masked), or what an admin key reads (clear, APISIX's behaviour)
    viewer_secrets: Literal["masked", "clear"] = "masked"
    #: the dashboard on this port under /ui/ (APISIX's name for its embedded one);
    #: Pylon: its sign-in sessions last this many seconds (docs/dashboard.md)
    enable_admin_ui: bool = True
    ui_session_timeout: Annotated[int, Meta(ge=60, le=7 * 86400)] = 3600


class RoleSection(_S, frozen=True):
    config_provider: Literal["yaml", "etcd"] | None = None


class EtcdTls(_S, frozen=True):
    cert: str | None = None          # client certificate (mTLS)
    key: str | None = None
    verify: bool = True
    sni: str | None = None
    ca: str | None = None            # CA bundle (Pylon; APISIX takes it from apisix.ssl)


class EtcdSection(_S, frozen=True):
    """``deployment.etcd`` as APISIX documents it."""

    host: list[str] = msgspec.field(default_factory=lambda: ["http://127.0.0.1:2379"])
    prefix: str = "/apisix"
    timeout: Annotated[float, Meta(gt=0)] = 30
    user: str | None = None
    password: str | None = None
    tls: EtcdTls | None = None
    #: Pylon: where the last-known-good copy of the configuration is kept, so a node can
    #: boot while etcd is down (relative to the prefix directory)
    snapshot_file: str = "conf/etcd-snapshot.json"


class Deployment(_S, frozen=True):
    role: Literal["traditional", "data_plane", "control_plane"] = "traditional"
    config_provider: Literal["yaml", "etcd"] | None = None
    standalone_file: str = "conf/pylon.yaml"
    role_traditional: RoleSection | None = None
    role_data_plane: RoleSection | None = None
    etcd: EtcdSection = EtcdSection()
    admin: AdminSection = AdminSection()


Duration = str | float | int
Size = str | int


class HttpSection(_S, frozen=True):
    client_header_timeout: Duration = "60s"
    client_body_timeout: Duration = "60s"
    keepalive_timeout: Duration = "60s"
    send_timeout: Duration = "10s"
    client_max_body_size: Size = 0
    large_client_header_buffers: str = "4 8k"      # nginx: URI limit = one buffer
    max_header_bytes: Size = "32k"
    max_headers: Annotated[int, Meta(ge=1)] = 100
    enable_access_log: bool = True
    access_log: str = "logs/access.log"
    access_log_format: str = DEFAULT_LOG_FORMAT
    max_pending_connections: Annotated[int, Meta(ge=1)] = 4096   # listen backlog
    #: nginx realip, APISIX's defaults: a peer in ``real_ip_from`` sets ``$remote_addr``
    #: with ``real_ip_header`` (``[]`` trusts nobody)
    real_ip_header: Annotated[str, Meta(min_length=1)] = "X-Real-IP"
    real_ip_recursive: Literal["on", "off"] | bool = "off"
    real_ip_from: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.1", "unix:"])
    #: nginx's http2_max_concurrent_streams: streams open at once on an HTTP/2 connection
    #: (more are refused with REFUSED_STREAM)
    http2_max_concurrent_streams: Annotated[int, Meta(ge=1, le=65535)] = 128
    #: nginx's http2_body_preread_size: a stream's request-body window (bytes a client may
    #: send before the upstream takes them)
    http2_body_preread_size: Size = "64k"


class StreamSection(_S, frozen=True):
    """``nginx_config.stream`` (APISIX's keys and defaults): the stream proxy's access log,
    one line per connection or UDP session when it ends."""

    enable_access_log: bool = False
    access_log: str = "logs/access_stream.log"
    access_log_format: str = ("$remote_addr [$time_local] $protocol $status $bytes_sent "
                              "$bytes_received $session_time")


class NginxConfig(_S, frozen=True):
    error_log: str = "logs/error.log"
    error_log_level: Literal["debug", "info", "notice", "warn", "error", "crit", "alert",
                             "emerg"] = "warn"
    worker_processes: Annotated[int, Meta(ge=1)] | Literal["auto"] | None = None
    worker_shutdown_timeout: Duration = "240s"
    http: HttpSection = HttpSection()
    stream: StreamSection = StreamSection()


class NodeConfig(_S, frozen=True):
    pylon: NodeSection | None = None
    apisix: NodeSection | None = None
    deployment: Deployment = Deployment()
    nginx_config: NginxConfig = NginxConfig()
    plugins: list[str] | None = None
    #: APISIX ``stream_plugins``: the plugins stream routes may name (docs/stream.md)
    stream_plugins: list[str] | None = None
    #: APISIX ``plugin_attr``: node-wide attributes per plugin (prometheus' export address,
    #: opentelemetry's collector, ...); each plugin validates its own part
    plugin_attr: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    #: APISIX ``discovery``: the registries upstreams may name (``pylon.discovery.config``)
    discovery: dict[str, Any] | None = None


def parse_duration(v: Duration, path: str) -> float:
    """``60s``, ``1m``, ``500ms``, ``1h`` or a number of seconds."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if v < 0:
            raise ConfigError("must not be negative", path)
        return float(v)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", str(v))
    if not m:
        raise ConfigError(f"bad duration {v!r} (use e.g. 60s, 500ms, 1m)", path)
    n = float(m.group(1))
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}[m.group(2)]


def parse_size(v: Size, path: str) -> int:
    """``8k``, ``1m``, ``1g`` or a number of bytes."""
    if isinstance(v, int) and not isinstance(v, bool):
        if v < 0:
            raise ConfigError("must not be negative", path)
        return v
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)\s*", str(v))
    if not m:
        raise ConfigError(f"bad size {v!r} (use e.g. 8k, 1m)", path)
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]


class ConnLimits:
    """``ServerLimits`` resolved (seconds): what ``admin.server`` applies."""

    __slots__ = ("body_timeout", "header_timeout", "idle_timeout", "max_connections")

    def __init__(self, header_timeout: float = 10.0, body_timeout: float = 10.0,
                 idle_timeout: float = 60.0, max_connections: int = 256) -> None:
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections

    @classmethod
    def of(cls, s: ServerLimits, path: str) -> ConnLimits:
        def timeout(name: str, zero_ok: bool = False) -> float:
            got = parse_duration(getattr(s, name), path + name)
            if got <= 0 and not zero_ok:
                raise ConfigError("must be more than 0", path + name)
            return got
        return cls(timeout("client_header_timeout"), timeout("client_body_timeout"),
                   timeout("keepalive_timeout", zero_ok=True), s.max_connections)


class Settings:
    """Resolved, typed node settings (what the processes actually use)."""

    def __init__(self, cfg: NodeConfig, prefix: str, path: str) -> None:
        self.raw = cfg
        self.prefix = prefix
        self.path = path
        node = cfg.pylon or cfg.apisix or NodeSection()
        self.listen: list[tuple[str, int]] = []
        for item in node.node_listen:
            if isinstance(item, int):
                self.listen.append(("0.0.0.0", item))
                if node.enable_ipv6:
                    self.listen.append(("::", item))
            else:
                self.listen.append((item.ip, item.port))
        self._tls_settings(node.ssl)
        self._stream_settings(node)
        if not self.listen and not self.udp_listen:
            raise ConfigError("at least one listen address is needed", "pylon.node_listen")
        workers = node.workers
        if cfg.nginx_config.worker_processes is not None and (cfg.pylon is None or
                                                               node.workers == "auto"):
            workers = cfg.nginx_config.worker_processes
        self.workers = os.cpu_count() or 1 if workers == "auto" else int(workers)
        self.router = node.router if isinstance(node.router, str) else node.router.http
        dep = cfg.deployment
        provider = dep.config_provider or (
            dep.role_traditional.config_provider if dep.role_traditional else None) or (
            dep.role_data_plane.config_provider if dep.role_data_plane else None) or "yaml"
        self.config_provider = provider
        if not dep.etcd.host:
            raise ConfigError("needs at least one etcd address", "deployment.etcd.host")
        if not dep.etcd.prefix.startswith("/"):
            raise ConfigError("must start with '/'", "deployment.etcd.prefix")
        self.etcd = dep.etcd
        self.etcd_snapshot = self.resolve(dep.etcd.snapshot_file)
        self.standalone_file = self.resolve(dep.standalone_file)
        h = cfg.nginx_config.http
        p = "nginx_config.http."
        self.client_header_timeout = parse_duration(h.client_header_timeout,
                                                    p + "client_header_timeout")
        self.client_body_timeout = parse_duration(h.client_body_timeout, p + "client_body_timeout")
        self.keepalive_timeout = parse_duration(h.keepalive_timeout, p + "keepalive_timeout")
        self.send_timeout = parse_duration(h.send_timeout, p + "send_timeout")
        self.max_body = parse_size(h.client_max_body_size, p + "client_max_body_size")
        parts = h.large_client_header_buffers.split()
        if len(parts) != 2:
            raise ConfigError("expected 'number size', e.g. '4 8k'",
                              p + "large_client_header_buffers")
        self.max_uri = parse_size(parts[1], p + "large_client_header_buffers")
        self.max_header_bytes = parse_size(h.max_header_bytes, p + "max_header_bytes")
        self.max_headers = h.max_headers
        self.access_log = self.resolve(h.access_log) if h.enable_access_log and \
            h.access_log not in ("off", "") else None
        self.access_log_format = h.access_log_format
        st = cfg.nginx_config.stream
        #: the stream proxy's access log (``nginx_config.stream``), None: off
        self.stream_access_log = self.resolve(st.access_log) if st.enable_access_log and \
            st.access_log not in ("off", "") else None
        self.stream_access_log_format = st.access_log_format
        self.backlog = h.max_pending_connections
        self.real_ip_header = h.real_ip_header
        self.real_ip_recursive = h.real_ip_recursive in ("on", True)
        self.real_ip_from = h.real_ip_from
        #: HTTP/2 (``server/h2.py``): h2c on the node_listen entries with enable_http2
        self.h2c_listen = [(i.ip, i.port) for i in node.node_listen
                           if not isinstance(i, int) and i.enable_http2]
        self.h2_max_streams = h.http2_max_concurrent_streams
        self.h2_window = parse_size(h.http2_body_preread_size, p + "http2_body_preread_size")
        if not 0 < self.h2_window < 1 << 31:
            raise ConfigError("must be more than 0 and less than 2g",
                              p + "http2_body_preread_size")
        from .proxy.realip import RealIp
        from .routing.expr import ExprError
        try:
            RealIp.check(h.real_ip_from, p + "real_ip_from")
        except ExprError as e:
            raise ConfigError(e.message, e.path) from None
        self.error_log = self.resolve(cfg.nginx_config.error_log)
        self.error_log_level = cfg.nginx_config.error_log_level
        self.shutdown_timeout = parse_duration(cfg.nginx_config.worker_shutdown_timeout,
                                               "nginx_config.worker_shutdown_timeout")
        self.pid_file = self.resolve("logs/pylon.pid")
        admin = dep.admin
        self.admin_enabled = node.enable_admin
        self.admin_listen = (admin.admin_listen.ip, admin.admin_listen.port)
        self.admin_keys = [{"name": k.name, "key": k.key, "role": k.role}
                           for k in admin.admin_key or ()]
        self.admin_key_required = admin.admin_key_required
        self.admin_limits = ConnLimits.of(admin, "deployment.admin.")
        self.allow_admin = admin.allow_admin
        self.control_enabled = node.enable_control
        self.control_listen = (node.control.ip, node.control.port)
        #: the Control API's, also the Prometheus export server's
        self.control_limits = ConnLimits.of(node.control, "apisix.control.")
        self.encrypt_fields = node.data_encryption.enable_encrypt_fields
        self.keyring = node.data_encryption.keyring
        self.admin_audit_log = self.resolve(admin.audit_log) if admin.audit_log else None
        self.admin_viewer_secrets = admin.viewer_secrets
        self.admin_ui = admin.enable_admin_ui
        self.admin_ui_session_timeout = admin.ui_session_timeout
        #: the node config's ``plugins:`` list (None: every plugin found loads)
        self.plugins = cfg.plugins
        #: APISIX's ``stream_plugins`` (None: every plugin with stream hooks)
        self.stream_plugins = self._stream_plugins(cfg)
        self.plugin_dirs = [self.resolve(d) for d in node.extra_plugin_dirs]
        self.show_upstream_status = node.show_upstream_status_in_response_header
        self.post_args_limit = node.max_post_args_readable_size << 20 or None
        self.reject_short_jwt_secrets = node.reject_short_jwt_secrets
        self.plugin_attr = cfg.plugin_attr
        from .discovery.config import parse as parse_discovery
        #: the ``discovery:`` section typed, by discovery type (watched by the master)
        self.discovery = parse_discovery(cfg.discovery)
        pc = node.proxy_cache
        #: ``apisix.proxy_cache`` resolved: ``{"cache_ttl": s, "zones": {name: {...}}}``
        #: (sizes in bytes, ``disk_path`` absolute; ``pdk.node_setting("proxy_cache")``)
        self.proxy_cache: dict[str, Any] = {
            "cache_ttl": parse_duration(pc.cache_ttl, "apisix.proxy_cache.cache_ttl"),
            "zones": {z.name: {
                "name": z.name,
                "memory_size": parse_size(z.memory_size,
                                          f"apisix.proxy_cache.zones[{i}].memory_size"),
                "disk_size": parse_size(z.disk_size, f"apisix.proxy_cache.zones[{i}].disk_size")
                if z.disk_size is not None else None,
                "disk_path": self.resolve(z.disk_path) if z.disk_path else None,
                "cache_levels": z.cache_levels} for i, z in enumerate(pc.zones)}}

    def _tls_settings(self, ssl: SslSection) -> None:
        """``apisix.ssl``: TLS listeners join ``listen`` (the master binds them all); a
        worker serves TLS on the addresses in ``tls_listen`` (address -> HTTP/2 in ALPN)."""
        from .tls.listener import DEFAULT_CIPHERS, TlsSettings
        p = "apisix.ssl."
        #: (ip, port) -> enable_http2, for every TLS listener
        self.tls_listen: dict[tuple[str, int], bool] = {}
        #: the TLS ports (the redirect plugin's ``http_to_https`` port)
        self.ssl_ports: list[int] = []
        self.tls = TlsSettings.of(
            ssl.ssl_protocols, ssl.ssl_ciphers or DEFAULT_CIPHERS, ssl.ssl_session_tickets,
            ssl.fallback_sni, self.resolve(ssl.ssl_cert) if ssl.ssl_cert else None,
            self.resolve(ssl.ssl_cert_key) if ssl.ssl_cert_key else None, p)
        self.ssl_trusted_certificate = None if ssl.ssl_trusted_certificate == "system" \
            else self.resolve(ssl.ssl_trusted_certificate)
        if not ssl.enable:
            return
        for i, item in enumerate(ssl.listen):
            if isinstance(item, int):
                addr, h2 = ("0.0.0.0", item), ssl.enable_http2
            else:
                addr = (item.ip, item.port)
                h2 = ssl.enable_http2 if item.enable_http2 is None else item.enable_http2
            if addr in self.listen:
                raise ConfigError(f"{addr[0]}:{addr[1]} is also a plain HTTP listener",
                                  f"{p}listen[{i}]")
            self.tls_listen[addr] = h2
            self.listen.append(addr)
            self.ssl_ports.append(addr[1])

    def _stream_plugins(self, cfg: NodeConfig) -> list[str] | None:
        """The ``stream_plugins:`` list; absent: every stream plugin found when ``plugins:``
        is absent too, else APISIX's default list (none on a node without the stream
        proxy, whose stream subsystem APISIX does not start)."""
        if cfg.stream_plugins is not None or cfg.plugins is None:
            return cfg.stream_plugins
        return list(DEFAULT_STREAM_PLUGINS) if self.proxy_mode != "http" else []

    def _stream_settings(self, node: NodeSection) -> None:
        """``apisix.proxy_mode`` and ``apisix.stream_proxy``: stream TCP listeners join
        ``listen`` (the master binds them with the HTTP ones); UDP ones are ``udp_listen``.
        ``proxy_mode: stream`` drops the HTTP listeners."""
        p = "apisix.stream_proxy."
        sp = node.stream_proxy
        mode = self.proxy_mode = node.proxy_mode
        #: (ip, port) -> terminate TLS, for every stream TCP listener
        self.stream_tcp: dict[tuple[str, int], bool] = {}
        self.udp_listen: list[tuple[str, int]] = []
        if mode == "stream":
            self.listen = []
            self.tls_listen = {}
        if mode == "http":
            return
        if sp is None or not (sp.tcp or sp.udp):
            raise ConfigError(f"proxy_mode {mode!r} needs at least one tcp or udp listener",
                              "apisix.stream_proxy")
        for i, item in enumerate(sp.tcp):
            tls = isinstance(item, StreamListen) and item.tls
            addr = _stream_addr(item.addr if isinstance(item, StreamListen) else item,
                                f"{p}tcp[{i}]")
            if addr in self.listen or addr in self.stream_tcp:
                raise ConfigError(f"{addr[0]}:{addr[1]} is already a listener", f"{p}tcp[{i}]")
            self.stream_tcp[addr] = tls
            self.listen.append(addr)
        for i, uitem in enumerate(sp.udp):
            addr = _stream_addr(uitem, f"{p}udp[{i}]")
            if addr in self.udp_listen:
                raise ConfigError(f"{addr[0]}:{addr[1]} is already a listener", f"{p}udp[{i}]")
            self.udp_listen.append(addr)

    def resolve(self, path: str) -> str:
        return path if os.path.isabs(path) else os.path.join(self.prefix, path)


def _stream_addr(v: int | str, path: str) -> tuple[str, int]:
    """A stream listener: a port (every IPv4 address, as nginx's ``listen 9100``),
    ``"ip:port"`` or ``"[v6]:port"``."""
    import ipaddress
    if isinstance(v, int):
        return ("0.0.0.0", v)
    host, sep, port = v.rpartition(":")
    if not sep:
        host, port = "0.0.0.0", v
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"bad address {v!r} (expected a port, ip:port or [ipv6]:port)",
                          path) from None
    if not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ConfigError(f"bad port in {v!r}", path)
    return (host, int(port))


def unknown_keys(data: Any, typ: type, path: str = "") -> list[str]:
    """Keys in ``data`` that the struct ``typ`` does not declare (reported as warnings)."""
    out: list[str] = []
    if not isinstance(data, dict):
        return out
    fields = {f.name: f for f in msgspec.structs.fields(typ)}
    for k, v in data.items():
        f = fields.get(k)
        p = f"{path}.{k}" if path else str(k)
        if f is None:
            out.append(p)
            continue
        sub = _struct_of(f.type)
        if sub is not None:
            if isinstance(v, list):          # e.g. node_listen: [{ip, port}, ...]
                for i, item in enumerate(v):
                    out.extend(unknown_keys(item, sub, f"{p}[{i}]"))
            else:
                out.extend(unknown_keys(v, sub, p))
    return out


def _struct_of(t: Any) -> type | None:
    import typing
    if isinstance(t, type) and issubclass(t, msgspec.Struct):
        return t
    for a in typing.get_args(t):
        s = _struct_of(a)
        if s is not None:
            return s
    return None


def load_settings(data: Any, prefix: str, path: str) -> tuple[Settings, list[str]]:
    """Typed settings plus warnings; raises ConfigError with the field path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping", path)
    try:
        cfg = msgspec.convert(data, NodeConfig)
    except msgspec.ValidationError as e:
        text = str(e)
        msg, _, where = text.partition(" - at `$")
        raise ConfigError(msg.replace("`", ""), where.rstrip("`").lstrip(".") or path) from None
    warnings = [f"unknown setting {k} (ignored)" for k in unknown_keys(data, NodeConfig)]
    node = cfg.pylon or cfg.apisix
    if node is not None and node.stream_proxy is not None and node.proxy_mode == "http":
        warnings.append("apisix.stream_proxy is ignored: proxy_mode is http (set it to "
                        "stream or http&stream, as in APISIX)")
    return Settings(cfg, prefix, path), warnings
