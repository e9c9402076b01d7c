"""JSON Schema errors in the words of APISIX's validator (api7/jsonschema).

fastjsonschema raises its own texts ("data.x must be integer"); APISIX users and their tooling
see ``property "x" validation failed: wrong type: expected integer, got string``.  Used for
every plugin configuration check (``registry.PluginSpec.check_conf``) and by
request-validation for request bodies and headers.
"""

from __future__ import annotations

import json
import re
from typing import Any

import fastjsonschema

_FORMAT_MSG = {"email": "expect valid email address but got: ",
               "ipv4": "expect valid ipv4 address but got: ",
               "ipv6": "expect valid ipv6 address but got: ",
               "hostname": "expect valid ipv4 address but got: "}   # sic, as APISIX says it


def _lua_type(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return "table"
    if isinstance(v, str):
        return "string"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return "userdata"      # JSON null (cjson.null)


def _num(v: Any) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return format(float(v), ".14g")
    return str(v)


def _lua_q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_RANGE = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "greater than",
          "exclusiveMaximum": "smaller than"}


def _leaf(rule: str | None, d: Any, value: Any) -> str | None:
    ref = d.get(rule) if isinstance(d, dict) and rule else None
    if rule == "type":
        t = ref
        got = _lua_type(value)
        if isinstance(t, list):
            return f"wrong type: expected one of {', '.join(t)}, got {got}"
        return f"wrong type: expected {t}, got {got}"
    if rule == "required" and isinstance(value, dict):
        for k in ref or ():
            if k not in value:
                return f"property {_lua_q(k)} is required"
    if rule in _RANGE:
        return f"expected {_num(value)} to be {_RANGE[rule]} {_num(ref)}"
    if rule == "multipleOf":
        return f"expected {_num(value)} to be a multiple of {_num(ref)}"
    if rule == "minLength":
        return f"string too short, expected at least {ref}, got {len(value)}"
    if rule == "maxLength":
        return f"string too long, expected at most {ref}, got {len(value)}"
    if rule == "pattern":
        return f"failed to match pattern {_lua_q(str(ref))} with {_lua_q(str(value))}"
    if rule == "enum":
        return "matches none of the enum values"
    if rule == "const":
        return "failed to check const value"
    if rule == "minItems":
        return f"expect array to have at least {ref} items"
    if rule == "maxItems":
        return f"expect array to have at most {ref} items"
    if rule == "minProperties":
        return f"expect object to have at least {ref} properties"
    if rule == "maxProperties":
        return f"expect object to have at most {ref} properties"
    if rule == "uniqueItems" and isinstance(value, list):
        for j, b in enumerate(value):
            for i in range(j):
                if value[i] == b and _lua_type(value[i]) == _lua_type(b):
                    return f"expected unique items but items {i + 1} and {j + 1} are equal"
    if rule == "additionalProperties" and isinstance(value, dict):
        props = d.get("properties") or {}
        pats = [re.compile(p) for p in d.get("patternProperties") or ()]
        for k in value:
            if k not in props and not any(p.search(k) for p in pats):
                return f"additional properties forbidden, found {k}"
    if rule == "anyOf":
        reqs = [json.dumps(s["required"], separators=(",", ":")) for s in ref or ()
                if isinstance(s, dict) and "required" in s]
        return "object matches none of the required" + (
            ": " + _lua_q(" or ".join(reqs)) if reqs else "")
    if rule == "oneOf":
        return "value should match only one schema, but matches none"
    if rule == "not":
        return "value wasn't supposed to match schema"
    if rule == "format" and ref in _FORMAT_MSG:
        return _FORMAT_MSG[ref] + str(value)
    if rule == "dependencies" and isinstance(value, dict):
        for prop, deps in (ref or {}).items():
            if prop in value and isinstance(deps, list):
                for dep in deps:
                    if dep not in value:
                        return f"property {_lua_q(dep)} is required when {_lua_q(prop)} is set"
    if rule == "items":
        return "found unexpected extra items in array"
    if rule == "contains":
        return "failed to check contains"
    return None


def lua_error(e: fastjsonschema.JsonSchemaValueException, data: Any) -> str:
    """``e`` for ``data`` in the words of APISIX's validator."""
    prefix = []
    cur = data
    for p in (e.path or ["data"])[1:]:
        if isinstance(cur, list):
            try:
                i = int(p)
                cur = cur[i]
            except (ValueError, IndexError):
                break
            prefix.append(f"failed to validate item {i + 1}: ")
        elif isinstance(cur, dict):
            cur = cur.get(p)
            prefix.append(f"property {_lua_q(str(p))} validation failed: ")
        else:
            break
    leaf = _leaf(e.rule, e.definition, e.value)
    if leaf is None:
        msg = e.message
        name = e.name or "data"
        leaf = msg[len(name) + 1:] if msg.startswith(name + " ") else msg
    return "".join(prefix) + leaf
