"""A hook answers with ``pdk.Reply`` whether it returns it or raises it, sync or async."""

from __future__ import annotations

import pytest

from pylon.pdk.testing import Kit

REPLIER = '''
from pylon import pdk

name = "replier"
priority = 91000
schema = {"type": "object", "properties": {"how": {"type": "string"}},
          "additionalProperties": False}

def _reply():
    return pdk.Reply(418, {"message": "teapot"}, {"X-Replied": "yes"})

def access(conf, ctx):
    how = conf["how"]
    if how == "return":
        return _reply()
    if how == "raise":
        raise _reply()
    if how == "async-return":
        return _later()

async def _later():
    return _reply()
'''

HOWS = ("return", "raise", "async-return")


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    d = tmp_path_factory.mktemp("plugins")
    (d / "replier.py").write_text(REPLIER)
    routes = [{"id": how, "uri": f"/{how}", "plugins": {"replier": {"how": how}}}
              for how in HOWS]
    with Kit({"routes": routes}, plugin_dirs=[str(d)]) as k:
        yield k


@pytest.mark.parametrize("how", HOWS)
def test_a_hook_that_returns_a_reply_answers_as_raising_it_does(kit, how):
    r = kit.get(f"/{how}")
    assert r.status == 418, r.body
    assert r.json() == {"message": "teapot"}
    assert r.headers["x-replied"] == "yes"
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert not kit.upstream.requests       # answered by the plugin, nothing went upstream
