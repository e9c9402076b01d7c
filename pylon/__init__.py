"""Pylon: an API gateway with APISIX-compatible configuration."""

__version__ = "0.1.0"
