"""The resource catalogue: every kind of object the Admin API serves, in one list.

A ``Kind`` says what the Admin API, its OpenAPI document, the schema endpoints and the
config checks need to know of a kind: its URL segment and store key (``name``), how messages
name it (``kind``, APISIX's wording), the singular alias APISIX's ``core.schema`` uses, the
title of its published schema, its id rules (``key_field``, ``two_part_id``, ``post``), whether
the node stamps ``create_time``/``update_time`` and which other objects it references.  The
JSON Schemas themselves are in ``pylon.model.schemas`` (published) and ``pylon.model.apisix``
(APISIX's, for its error wording); the typed models of routes, services and upstreams in
``pylon.model.route`` / ``pylon.model.upstream``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: APISIX's id rule (``id_schema``): 1-64 characters of [a-zA-Z0-9-_.]
ID_PATTERN = r"^[a-zA-Z0-9\-_.]+$"
ID_RE = re.compile(r"^[a-zA-Z0-9\-_.]{1,64}$")


@dataclass(frozen=True, slots=True)
class Kind:
    name: str                     # URL segment and top-level key: "routes"
    kind: str                     # APISIX's singular in messages: "route"
    title: str                    # the title of its published schema / OpenAPI component
    alias: str | None = None      # APISIX's singular name (``schema/route``)
    key_field: str = "id"         # consumers are keyed by username
    typed: bool = False           # validated by pylon.model (routes, services, upstreams)
    post: bool = True             # POST (generated id) supported
    patch: bool = True            # PATCH (APISIX: not on credentials, protos, stream routes)
    timestamps: bool = True       # create_time / update_time injected
    two_part_id: bool = False     # secrets: /secrets/<manager>/<id>
    #: (field, resource it names) checked on write, in APISIX's order, and, reversed, on
    #: delete
    refs: tuple[tuple[str, str], ...] = ()
    label: str = ""               # how delete refusals name an object of this kind


#: every kind, in the order the schemas and the OpenAPI document list them
CATALOGUE: tuple[Kind, ...] = (
    Kind("routes", "route", "Route", "route", typed=True, label="route",
         refs=(("upstream_id", "upstreams"), ("service_id", "services"),
               ("plugin_config_id", "plugin_configs"))),
    Kind("services", "service", "Service", "service", typed=True, label="service",
         refs=(("upstream_id", "upstreams"),)),
    Kind("upstreams", "upstream", "Upstream", "upstream", typed=True, label="upstream"),
    Kind("consumers", "consumer", "Consumer", "consumer", key_field="username", post=False,
         label="consumer", refs=(("group_id", "consumer_groups"),)),
    #: ``/consumers/{username}/credentials/{id}`` (APISIX 3.8+): its own kind in the state,
    #: stored under ``consumers/``, no URL segment of its own
    Kind("credentials", "credential", "Credential", "credential", post=False, patch=False),
    Kind("consumer_groups", "consumer group", "ConsumerGroup", "consumer_group"),
    Kind("plugin_configs", "plugin config", "PluginConfig", "plugin_config"),
    Kind("global_rules", "global rule", "GlobalRule", "global_rule"),
    Kind("ssls", "ssl", "SSL", "ssl"),
    Kind("protos", "proto", "Proto", "proto", patch=False),
    Kind("stream_routes", "stream route", "StreamRoute", "stream_route", label="stream_route",
         refs=(("upstream_id", "upstreams"), ("service_id", "services")), patch=False),
    Kind("secrets", "secret", "Secret", "secret", post=False, two_part_id=True),
    Kind("plugin_metadata", "plugin_metadata", "PluginMetadata", post=False,
         timestamps=False),
)
BY_NAME: dict[str, Kind] = {k.name: k for k in CATALOGUE}
#: canonical kind names, catalogue order
KINDS: tuple[str, ...] = tuple(BY_NAME)
#: kinds validated by the typed models
TYPED_KINDS: tuple[str, ...] = tuple(k.name for k in CATALOGUE if k.typed)
CREDENTIALS = BY_NAME["credentials"]
#: the kinds a URL names directly (``/apisix/admin/<name>``): all but credentials
SPECS: dict[str, Kind] = {k.name: k for k in CATALOGUE if k is not CREDENTIALS}
#: every accepted name -> canonical (APISIX's ``core.schema`` uses the singular names)
ALIASES: dict[str, str] = {k: k for k in KINDS}
ALIASES.update({k.alias: k.name for k in CATALOGUE if k.alias is not None})

#: delete checks: target kind -> [(referring kind, field)], APISIX's order
USERS: dict[str, list[tuple[str, str]]] = {}
for _spec in CATALOGUE:
    for _field, _target in _spec.refs:
        USERS.setdefault(_target, []).append((_spec.name, _field))
for _users in USERS.values():
    _users.sort(key=lambda u: ["routes", "services", "stream_routes", "consumers"].index(u[0]))


def canonical_kind(name: str) -> str | None:
    """The canonical (plural) name of a kind named plural or APISIX-singular, else None."""
    return ALIASES.get(name)


def ref_names(kind: str) -> tuple[tuple[str, str, str], ...]:
    """``kind``'s references as (field, kind it names, how messages name that kind)."""
    return tuple((f, target, BY_NAME[target].kind) for f, target in BY_NAME[kind].refs)
