"""Pylon: an API gateway with APISIX-compatible configuration."""

__version__ = "0.1.0"

from . import _native

_native.select()        # compiled core or the sources: once, before any hot module loads
