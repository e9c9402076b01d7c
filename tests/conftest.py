from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from .harness import Gateway, Upstream


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if os.environ.get("PYLON_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow soak/bench test; set PYLON_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def upstream_factory() -> Iterator[Any]:
    made: list[Upstream] = []

    def make(*a: Any, **kw: Any) -> Upstream:
        u = Upstream(*a, **kw)
        made.append(u)
        return u

    yield make
    for u in made:
        u.close()


@pytest.fixture
def upstream(upstream_factory: Any) -> Upstream:
    return upstream_factory("u1")


@pytest.fixture
def gateway_factory(tmp_path: Any) -> Iterator[Any]:
    made: list[Gateway] = []

    def make(doc: dict[str, Any] | None = None, start: bool = True, **kw: Any) -> Gateway:
        d = tmp_path / f"gw{len(made)}"
        d.mkdir()
        g = Gateway(str(d), doc, **kw)
        made.append(g)
        if start:
            g.start()
        return g

    yield make
    for g in made:
        g.stop()
