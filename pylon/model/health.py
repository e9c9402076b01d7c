"""The ``checks`` of an upstream (APISIX's health checker configuration), typed.

``parse_checks`` turns the raw ``upstream.checks`` object into ``Checks`` with APISIX's
defaults filled in (lua-resty-healthcheck's); the config compiler does it once per upstream
(``config.compiler.upstream_plan``), so the worker side (``pylon.upstream.health``) and the
master's checkers (``pylon.upstream.checker``) read the same values.  An object that does not
parse is kept as ``BadChecks`` (the raw value and why): the master logs it once and the
upstream runs without health checks, as before.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

_Count = Annotated[int, Meta(ge=1, le=254)]
_Count0 = Annotated[int, Meta(ge=0, le=254)]     # passive: 0 turns the counter off
_Status = Annotated[int, Meta(ge=200, le=599)]


class _C(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    pass


class ActiveHealthy(_C, frozen=True):
    interval: Annotated[int, Meta(ge=1)] = 1
    http_statuses: Annotated[list[_Status], Meta(min_length=1)] = \
        msgspec.field(default_factory=lambda: [200, 302])
    successes: _Count = 2


class ActiveUnhealthy(_C, frozen=True):
    interval: Annotated[int, Meta(ge=1)] = 1
    http_statuses: Annotated[list[_Status], Meta(min_length=1)] = \
        msgspec.field(default_factory=lambda: [429, 404, 500, 501, 502, 503, 504, 505])
    http_failures: _Count = 5
    tcp_failures: _Count = 2
    timeouts: _Count = 3


class Active(_C, frozen=True):
    type: Literal["http", "https", "tcp"] = "http"
    timeout: Annotated[float, Meta(gt=0)] = 1.0
    concurrency: Annotated[int, Meta(ge=1)] = 10
    host: str | None = None
    port: Annotated[int, Meta(ge=1, le=65535)] | None = None
    http_path: str = "/"
    https_verify_certificate: bool = True
    req_headers: Annotated[list[str], Meta(min_length=1)] | None = None
    healthy: ActiveHealthy = ActiveHealthy()
    unhealthy: ActiveUnhealthy = ActiveUnhealthy()


class PassiveHealthy(_C, frozen=True):
    http_statuses: Annotated[list[_Status], Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: [200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                                 300, 301, 302, 303, 304, 305, 306, 307, 308])
    successes: _Count0 = 5


class PassiveUnhealthy(_C, frozen=True):
    http_statuses: Annotated[list[_Status], Meta(min_length=1)] = \
        msgspec.field(default_factory=lambda: [429, 500, 503])
    tcp_failures: _Count0 = 2
    timeouts: _Count0 = 7
    http_failures: _Count0 = 5


class Passive(_C, frozen=True):
    type: Literal["http", "https", "tcp"] = "http"
    healthy: PassiveHealthy = PassiveHealthy()
    unhealthy: PassiveUnhealthy = PassiveUnhealthy()


class Checks(_C, frozen=True):
    active: Active | None = None
    passive: Passive | None = None

    @property
    def type(self) -> str:
        """What the control API shows: the active type, else the passive one."""
        if self.active is not None:
            return self.active.type
        return self.passive.type if self.passive is not None else "http"


def parse_checks(raw: Any) -> Checks:
    """APISIX ``upstream.checks`` with its defaults filled in; ValueError names the field."""
    try:
        c = msgspec.convert(raw, Checks)
    except msgspec.ValidationError as e:
        text = str(e).replace("`", "").replace(" - at $", " at checks")
        raise ValueError(text) from None
    if c.active is None and c.passive is None:
        raise ValueError("checks needs active (and optionally passive)")
    return c



class BadChecks(msgspec.Struct, frozen=True):
    """``checks`` that do not parse: the raw value and ``parse_checks``'s message."""

    raw: Any
    error: str


def plan_checks(raw: Any) -> tuple[Checks | None, BadChecks | None]:
    """What an upstream plan carries for its raw ``checks``: ``(checks, None)`` when they
    parse, ``(None, BadChecks)`` when not, ``(None, None)`` when there are none."""
    if not raw:
        return None, None
    try:
        return parse_checks(raw), None
    except ValueError as e:
        return None, BadChecks(raw, str(e))
