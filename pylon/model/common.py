"""Field types shared by the resource models (APISIX v3 schema constraints)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

# APISIX id rule: 1-64 chars of [a-zA-Z0-9-_.]; integers are accepted and stringified.
IdStr = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9-_.]+$")]
Id = IdStr | int
Name = Annotated[str, Meta(min_length=1, max_length=256)]
Desc = Annotated[str, Meta(max_length=256)]
# APISIX labels_def: any key; values 1-256 characters without whitespace
Labels = dict[str, Annotated[str, Meta(min_length=1, max_length=256, pattern=r"^\S+$")]]
Port = Annotated[int, Meta(ge=1, le=65535)]
PositiveNumber = Annotated[float, Meta(gt=0)]
NonNegInt = Annotated[int, Meta(ge=0)]
Timestamp = int
Plugins = dict[str, dict[str, object]]
Host = Annotated[str, Meta(min_length=1, max_length=255,
                           pattern=r"^\*?[0-9a-zA-Z-._\[\]:]+$")]


class Base(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, frozen=True,
           kw_only=True):
    """Resources are frozen values: a compiled snapshot can share them safely."""


class Timeout(Base, frozen=True):
    """APISIX ``timeout_def``: all three are required (a partial timeout would silently
    use 60 s for the missing ones instead of the upstream's values)."""

    connect: PositiveNumber
    send: PositiveNumber
    read: PositiveNumber

