"""APISIX 3.x core object schemas (``apisix/schema_def.lua``), as JSON Schema.

The Admin API checks a written object against these first, in api7/jsonschema's words
(``pylon.model.schema_errors.api7_error``), so a client sees exactly what APISIX would say;
the typed models (``pylon.model.route`` / ``upstream``) then add what Pylon itself refuses.
"""

from __future__ import annotations

import copy
from typing import Any

ID_SCHEMA: dict[str, Any] = {"anyOf": [
    {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[a-zA-Z0-9-_.]+$"},
    {"type": "integer", "minimum": 1},
]}
HOST_DEF: dict[str, Any] = {"type": "string", "pattern": r"^\*?[0-9a-zA-Z-._\[\]:]+$"}
_IPV4_SEG = r"([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])"
_IPV4 = r"\.".join([_IPV4_SEG] * 4)
_IPV6 = r"([a-fA-F0-9]{0,4}:){1,8}(:[a-fA-F0-9]{0,4}){0,8}([a-fA-F0-9]{0,4})?"
IP_DEF: list[dict[str, Any]] = [
    {"title": "IPv4", "type": "string", "format": "ipv4"},
    {"title": "IPv4/CIDR", "type": "string", "pattern": "^" + _IPV4 + "/([12]?[0-9]|3[0-2])$"},
    {"title": "IPv6", "type": "string", "format": "ipv6"},
    {"title": "IPv6/CIDR", "type": "string", "pattern": "^" + _IPV6 + "/[0-9]{1,3}$"},
]
TIMESTAMP: dict[str, Any] = {"type": "integer"}
REMOTE_ADDR: dict[str, Any] = {"description": "client IP", "type": "string", "anyOf": IP_DEF}
LABEL_VALUE: dict[str, Any] = {"description": "value of label", "type": "string",
                               "pattern": r"^\S+$", "maxLength": 256, "minLength": 1}
LABELS: dict[str, Any] = {"description": "key/value pairs to specify attributes",
                          "type": "object", "patternProperties": {".*": LABEL_VALUE}}
NAME: dict[str, Any] = {"type": "string", "maxLength": 256, "minLength": 1}
DESC: dict[str, Any] = {"type": "string", "maxLength": 256}
PLUGINS: dict[str, Any] = {"type": "object"}
TIMEOUT: dict[str, Any] = {
    "type": "object",
    "properties": {"connect": {"type": "number", "exclusiveMinimum": 0},
                   "send": {"type": "number", "exclusiveMinimum": 0},
                   "read": {"type": "number", "exclusiveMinimum": 0}},
    "required": ["connect", "send", "read"],
}


def _statuses(default: list[int]) -> dict[str, Any]:
    return {"type": "array", "minItems": 1, "uniqueItems": True, "default": default,
            "items": {"type": "integer", "minimum": 200, "maximum": 599}}


def _count(default: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": 254, "default": default}


_PROBE_TYPE: dict[str, Any] = {"type": "string", "enum": ["http", "https", "tcp"],
                               "default": "http"}
HEALTH_CHECKER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "active": {"type": "object", "properties": {
            "type": _PROBE_TYPE,
            "timeout": {"type": "number", "default": 1},
            "concurrency": {"type": "integer", "default": 10},
            "host": HOST_DEF,
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "http_path": {"type": "string", "default": "/"},
            "https_verify_certificate": {"type": "boolean", "default": True},
            "healthy": {"type": "object", "properties": {
                "interval": {"type": "integer", "minimum": 1, "default": 1},
                "http_statuses": _statuses([200, 302]),
                "successes": _count(2)}},
            "unhealthy": {"type": "object", "properties": {
                "interval": {"type": "integer", "minimum": 1, "default": 1},
                "http_statuses": _statuses([429, 404, 500, 501, 502, 503, 504, 505]),
                "http_failures": _count(5),
                "tcp_failures": _count(2),
                "timeouts": _count(3)}},
            "req_headers": {"type": "array", "minItems": 1,
                            "items": {"type": "string", "uniqueItems": True}},
        }},
        "passive": {"type": "object", "properties": {
            "type": _PROBE_TYPE,
            "healthy": {"type": "object", "properties": {
                "http_statuses": _statuses([200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                                            300, 301, 302, 303, 304, 305, 306, 307, 308]),
                "successes": _count(5)}},
            "unhealthy": {"type": "object", "properties": {
                "http_statuses": _statuses([429, 500, 503]),
                "tcp_failures": _count(2),
                "timeouts": _count(7),
                "http_failures": _count(5)}},
        }},
    },
    "additionalProperties": False,
    "anyOf": [{"required": ["active"]}, {"required": ["active", "passive"]}],
}
NODES: dict[str, Any] = {"anyOf": [
    {"type": "object", "patternProperties": {
        ".*": {"description": "weight of node", "type": "integer", "minimum": 0}}},
    {"type": "array", "items": {
        "type": "object",
        "properties": {
            "host": HOST_DEF,
            "port": {"description": "port of node", "type": "integer", "minimum": 1},
            "weight": {"description": "weight of node", "type": "integer", "minimum": 0},
            "priority": {"description": "priority of node", "type": "integer", "default": 0},
            "metadata": {"description": "metadata of node", "type": "object"},
        },
        "required": ["host", "weight"],
    }},
]}
UPSTREAM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "create_time": TIMESTAMP, "update_time": TIMESTAMP,
        "nodes": NODES,
        "retries": {"type": "integer", "minimum": 0},
        "retry_timeout": {"type": "number", "minimum": 0},
        "timeout": TIMEOUT,
        "tls": {"type": "object", "properties": {
            "client_cert_id": ID_SCHEMA,
            "client_cert": {"type": "string"},
            "client_key": {"type": "string"},
            "verify": {"type": "boolean", "default": False},
        }, "dependencies": {
            "client_cert": {"required": ["client_key"]},
            "client_key": {"required": ["client_cert"]},
            "client_cert_id": {"not": {"required": ["client_cert", "client_key"]}},
        }},
        "keepalive_pool": {"type": "object", "properties": {
            "size": {"type": "integer", "default": 320, "minimum": 1},
            "idle_timeout": {"type": "number", "default": 60, "minimum": 0},
            "requests": {"type": "integer", "default": 1000, "minimum": 1},
        }},
        "type": {"description": "algorithms of load balancing", "type": "string",
                 "enum": ["chash", "roundrobin", "ewma", "least_conn"],
                 "default": "roundrobin"},
        "checks": HEALTH_CHECKER,
        "hash_on": {"type": "string", "default": "vars",
                    "enum": ["vars", "header", "cookie", "consumer", "vars_combinations"]},
        "key": {"description": "the key of chash for dynamic load balancing",
                "type": "string"},
        "scheme": {"default": "http", "enum": ["grpc", "grpcs", "http", "https", "tcp", "tls",
                                                   "udp"]},
        "discovery_type": {"description": "discovery type", "type": "string"},
        "discovery_args": {"type": "object"},
        "pass_host": {"description": "mod of host passing", "type": "string",
                      "enum": ["pass", "node", "rewrite"], "default": "pass"},
        "upstream_host": HOST_DEF,
        "service_name": {"type": "string", "maxLength": 256, "minLength": 1},
        "id": ID_SCHEMA, "name": NAME, "desc": DESC, "labels": LABELS,
    },
    "oneOf": [{"required": ["nodes"]}, {"required": ["service_name", "discovery_type"]}],
    "additionalProperties": False,
}
HASH_KEY: dict[str, dict[str, Any]] = {
    "vars": {"type": "string", "pattern": r"^((uri|server_name|server_addr|request_uri"
             r"|remote_port|remote_addr|query_string|host|hostname|mqtt_client_id)"
             r"|arg_[0-9a-zA-z_-]+)$"},
    "header": {"type": "string", "pattern": r"^[a-zA-Z0-9-_]+$"},
    "cookie": {"type": "string", "pattern": r"^[a-zA-Z0-9-_]+$"},
    "vars_combinations": {"type": "string"},
}


def _one_or_none(a: str, b: str) -> dict[str, Any]:
    return {"oneOf": [{"not": {"anyOf": [{"required": [a]}, {"required": [b]}]}},
                      {"required": [a]}, {"required": [b]}]}


ROUTE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "create_time": TIMESTAMP, "update_time": TIMESTAMP,
        "uri": {"type": "string", "minLength": 1, "maxLength": 4096},
        "uris": {"type": "array", "items": {"description": "HTTP uri", "type": "string"},
                 "minItems": 1, "uniqueItems": True},
        "name": NAME, "desc": DESC,
        "priority": {"type": "integer", "default": 0},
        "methods": {"type": "array", "uniqueItems": True, "items": {
            "description": "HTTP method", "type": "string",
            "enum": ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT",
                     "TRACE", "PURGE"]}},
        "host": HOST_DEF,
        "hosts": {"type": "array", "items": HOST_DEF, "minItems": 1, "uniqueItems": True},
        "remote_addr": REMOTE_ADDR,
        "remote_addrs": {"type": "array", "items": REMOTE_ADDR, "minItems": 1,
                         "uniqueItems": True},
        "timeout": TIMEOUT,
        "vars": {"type": "array"},
        "filter_func": {"type": "string", "minLength": 10, "pattern": r"^function"},
        "script": {"type": "string", "minLength": 10, "maxLength": 102400},
        "script_id": ID_SCHEMA,
        "plugins": PLUGINS,
        "plugin_config_id": ID_SCHEMA,
        "upstream": UPSTREAM,
        "labels": LABELS,
        "service_id": ID_SCHEMA,
        "upstream_id": ID_SCHEMA,
        "enable_websocket": {"description": "enable websocket for request",
                             "type": "boolean"},
        "id": ID_SCHEMA,
        "status": {"description": "route status, 1 to enable, 0 to disable",
                   "type": "integer", "enum": [1, 0], "default": 1},
    },
    "allOf": [
        {"oneOf": [{"required": ["uri"]}, {"required": ["uris"]}]},
        _one_or_none("host", "hosts"),
        _one_or_none("remote_addr", "remote_addrs"),
    ],
    "not": {"anyOf": [{"required": ["script", "plugins"]},
                      {"required": ["script", "plugin_config_id"]}]},
    "additionalProperties": False,
}
SERVICE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": ID_SCHEMA, "plugins": PLUGINS, "upstream": UPSTREAM, "upstream_id": ID_SCHEMA,
        "name": NAME, "desc": DESC, "labels": LABELS,
        "script": {"type": "string", "minLength": 10, "maxLength": 102400},
        "create_time": TIMESTAMP, "update_time": TIMESTAMP,
        "enable_websocket": {"description": "enable websocket for request",
                             "type": "boolean"},
        "hosts": {"type": "array", "items": HOST_DEF, "minItems": 1, "uniqueItems": True},
    },
    "additionalProperties": False,
}
CONSUMER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "username": {"type": "string", "minLength": 1, "maxLength": 256,
                     "pattern": r"^[a-zA-Z0-9_\-]+$"},
        "group_id": ID_SCHEMA, "plugins": PLUGINS, "labels": LABELS,
        "create_time": TIMESTAMP, "update_time": TIMESTAMP, "desc": DESC,
    },
    "required": ["username"],
    "additionalProperties": False,
}
CREDENTIAL: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": ID_SCHEMA, "name": NAME, "desc": DESC, "labels": LABELS,
        "plugins": {"type": "object", "maxProperties": 1},
        "create_time": TIMESTAMP, "update_time": TIMESTAMP,
    },
    "additionalProperties": False,
}
_PLUGIN_SET: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": ID_SCHEMA, "name": NAME, "desc": DESC, "plugins": PLUGINS, "labels": LABELS,
        "create_time": TIMESTAMP, "update_time": TIMESTAMP,
    },
    "required": ["id", "plugins"],
    "additionalProperties": False,
}
GLOBAL_RULE: dict[str, Any] = {
    "type": "object",
    "properties": {"id": ID_SCHEMA, "plugins": PLUGINS,
                   "create_time": TIMESTAMP, "update_time": TIMESTAMP},
    "required": ["id", "plugins"],
    "additionalProperties": False,
}

#: resource kind (Admin API plural) -> its APISIX schema
SCHEMAS: dict[str, dict[str, Any]] = {
    "routes": ROUTE,
    "services": SERVICE,
    "upstreams": UPSTREAM,
    "consumers": CONSUMER,
    "credentials": CREDENTIAL,
    "consumer_groups": _PLUGIN_SET,
    "plugin_configs": copy.deepcopy(_PLUGIN_SET),
    "global_rules": GLOBAL_RULE,
}
