from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from .harness import Upstream, closing_factory, quick_gateway_factory

__all__ = ["quick_gateway_factory"]


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if os.environ.get("PYLON_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow soak/bench test; set PYLON_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def upstream_factory() -> Iterator[Any]:
    yield from closing_factory(Upstream)


@pytest.fixture
def upstream(upstream_factory: Any) -> Upstream:
    return upstream_factory("u1")


@pytest.fixture
def gateway_factory(quick_gateway_factory: Any) -> Any:
    """A real ``pylon start`` per call; stopped (SIGTERM, reaped later) after the test."""
    return quick_gateway_factory
