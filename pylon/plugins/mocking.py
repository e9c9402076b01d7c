"""mocking: answer the request with mock data; the upstream is never called (APISIX).

Route: ``response_example`` (the body, ``$var`` / ``${var}`` resolved as APISIX's
``core.utils.resolve_var`` does) or ``response_schema`` (a JSON Schema the body is generated
from; ``response_example`` wins when both are set; one of them is required),
``response_status`` (200), ``content_type`` (``application/json;charset=utf8``; its media
type must be one of application/json, application/xml, text/plain, text/html, text/xml),
``delay`` (seconds, an asyncio sleep), ``with_mock_header`` (true) and ``response_headers``
(added to the reply, values may use ``$var``).

The generator is APISIX's: an object gets every one of its ``properties``; an ``array`` 1 to
3 items generated from ``items`` (no ``items``: the field is left out); a ``string`` its
``example`` when that is a string, else 1 to 10 random lower-case letters; a ``number`` its
numeric ``example``, else a random float below 10000; an ``integer`` its ``example`` rounded
down, else a random integer from 1 to 10000; a ``boolean`` its ``example`` when that is true,
else a random one (APISIX's ``example and ...`` test makes ``false`` random too).  A
generated body is JSON for application/json and text/plain, xml2lua's ``toXml(output,
"data")`` layout for application/xml and text/xml, and empty (an error logged) for
text/html.

Differs from APISIX: the mock header is ``x-mock-by: Pylon/<version>`` (APISIX sends
``APISIX/<its version>``); Pylon reports its own name and version there as in ``Server``.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
from typing import Any

from pylon import pdk
from pylon.pdk.template import compile_template

name = "mocking"
priority = 10900
version = 0.1

schema = {
    "type": "object",
    "properties": {
        "delay": {"type": "integer", "default": 0},
        "response_status": {"type": "integer", "default": 200, "minimum": 100},
        "content_type": {"type": "string", "default": "application/json;charset=utf8"},
        "response_example": {"type": "string"},
        "response_schema": {"type": "object"},
        "with_mock_header": {"type": "boolean", "default": True},
        "response_headers": {
            "type": "object",
            "minProperties": 1,
            "patternProperties": {
                "^[^:]+$": {"oneOf": [{"type": "string"}, {"type": "number"}]},
            },
        },
    },
    "anyOf": [{"required": ["response_example"]}, {"required": ["response_schema"]}],
}

_SUPPORTED = frozenset(("application/xml", "application/json", "text/plain", "text/html",
                        "text/xml"))
# APISIX: ngx.re.match(content_type, "([ -~]*);([ -~]*)"), greedy: the text before the last ';'
_CT = re.compile(r"([ -~]*);([ -~]*)")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_MOCK_BY = f"Pylon/{pdk.VERSION}"


def _media_type(content_type: str) -> str:
    m = _CT.search(content_type)
    return m.group(1) if m else content_type


def _lua_tostring(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return format(v, ".14g")
    return str(v)


def check(conf: dict[str, Any], schema_type: str) -> None:
    if _media_type(conf["content_type"]) not in _SUPPORTED:
        raise ValueError("unsupported content type!")
    for hname, value in (conf.get("response_headers") or {}).items():
        if not _HEADER_NAME.fullmatch(hname):
            raise ValueError(f'property "response_headers" validation failed: bad header '
                             f"name {hname!r}")
        if isinstance(value, str) and re.search(r"[\r\n\x00]", value):
            raise ValueError(f'property "response_headers" validation failed: header '
                             f"{hname!r} value contains a control character")


# -- the generator (apisix/plugins/mocking.lua) ------------------------------------------------
def _gen_string(example: Any) -> str:
    if isinstance(example, str):
        return example
    return "".join(chr(random.randint(97, 122)) for _ in range(random.randint(1, 10)))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _gen_by_property(prop: Any) -> Any:
    if not isinstance(prop, dict) or not isinstance(prop.get("type"), str):
        return None
    typ = prop["type"].lower()
    example = prop.get("example")
    if typ == "array":
        items = prop.get("items")
        if items is None:
            return None
        out = [_gen_by_property(items) for _ in range(random.randint(1, 3))]
        out = [v for v in out if v is not None]      # a Lua array cannot hold nil
        return out if out else {}                    # cjson: an empty table is {}
    if typ == "object":
        return _gen_object(prop)
    if typ == "string":
        return _gen_string(example)
    if typ == "number":
        if _is_number(example):
            return example
        return float(format(random.random() * 10000, ".14g"))
    if typ == "integer":
        if _is_number(example):
            return math.floor(example)  # type: ignore[arg-type]
        return random.randint(1, 10000)
    if typ == "boolean":
        if example is True:
            return True
        return random.randint(0, 1) == 1
    return None


def _gen_object(prop: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    props = prop.get("properties")
    if not isinstance(props, dict):
        return out
    for k, v in props.items():
        val = _gen_by_property(v)
        if val is not None:
            out[k] = val
    return out


def _is_table(v: Any) -> bool:
    return isinstance(v, (dict, list))


def _items(tb: Any) -> Any:
    return enumerate(tb, 1) if isinstance(tb, list) else tb.items()


def _attrs(v: Any) -> str:
    attr = v.pop("_attr", None) if isinstance(v, dict) else None
    return "".join(f' {k}="{_lua_tostring(x)}"' for k, x in (attr or {}).items())


def to_xml(tb: Any, table_name: str = "", level: int = 1) -> str:
    """xml2lua's ``toXml`` (1.5), its layout and quirks included."""
    first_level = level
    spaces = " " * (level * 2)
    out = [f"<{table_name}>"] if table_name and level == 1 else []
    for k, v in _items(tb):
        if _is_table(v):
            if isinstance(k, int):                   # an array of objects
                attrs = _attrs(v)
                out.append(f"{spaces}<{table_name}{attrs}>\n{to_xml(v, table_name, level + 1)}"
                           f"\n{spaces}</{table_name}>")
            else:
                level += 1
                if isinstance(v, list) and v:        # a "hash" of arrays
                    out.append(to_xml(v, k, level))
                else:
                    attrs = _attrs(v)
                    out.append(f"{spaces}<{k}{attrs}>\n{to_xml(v, k, level + 1)}"
                               f"\n{spaces}</{k}>")
        else:
            tag = table_name if isinstance(k, int) else k
            out.append(f"{spaces}<{tag}>{_lua_tostring(v)}</{tag}>")
    if table_name and first_level == 1:
        out.append(f"</{table_name}>\n")
    return "\n".join(out)


# -- the plugin ------------------------------------------------------------------------------
class _Conf:
    __slots__ = ("delay", "example", "headers", "kind", "schema", "status")

    def __init__(self, conf: dict[str, Any]) -> None:
        self.status: int = conf["response_status"]
        self.delay: int = conf["delay"]
        example = conf.get("response_example")
        self.example = None if example is None else compile_template(example)
        self.schema: dict[str, Any] | None = conf.get("response_schema")
        media = _media_type(conf["content_type"])
        self.kind = "xml" if media in ("application/xml", "text/xml") else \
            "json" if media in ("application/json", "text/plain") else None
        headers: list[tuple[str, Any]] = [("Content-Type", conf["content_type"])]
        if conf["with_mock_header"]:
            headers.append(("x-mock-by", _MOCK_BY))
        for n, v in (conf.get("response_headers") or {}).items():
            headers.append((n, compile_template(_lua_tostring(v))))
        self.headers = headers


def prepare(conf: dict[str, Any]) -> _Conf:
    return _Conf(conf)


def _generate(conf: _Conf) -> str:
    output = _gen_object(conf.schema or {})
    if conf.kind == "xml":
        return to_xml(output, "data")
    if conf.kind == "json":
        return json.dumps(output, ensure_ascii=False, separators=(",", ":"))
    pdk.log.error("json schema body only support xml and json content type")
    return ""


def _reply(conf: _Conf, ctx: pdk.Context) -> Any:
    if conf.example is not None:
        body = conf.example.render(ctx, _lua_tostring)
    else:
        body = _generate(conf)
        if "$" in body:
            body = compile_template(body).render(ctx, _lua_tostring)
    headers = [(n, v if isinstance(v, str) else v.render(ctx, _lua_tostring))
               for n, v in conf.headers]
    return conf.status, body.encode(), headers


async def _delayed(conf: _Conf, ctx: pdk.Context) -> Any:
    await asyncio.sleep(conf.delay)
    return _reply(conf, ctx)


def access(conf: _Conf, ctx: pdk.Context) -> Any:
    if conf.delay > 0:
        return _delayed(conf, ctx)
    return _reply(conf, ctx)
