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
        # api7 builds this text at run time from a quoted literal: no quotes in the output
        return "object matches none of the required" + (": " + " or ".join(reqs) if reqs else "")
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


# --------------------------------------------------------------------------- api7 order
# fastjsonschema reports the first failure in *its* keyword order (``required`` and
# ``anyOf`` before ``properties``...); api7/jsonschema, which APISIX uses, walks a schema in
# a fixed order of its own and nests the messages ("property "x" validation failed: ...").
# ``api7_error`` re-walks a value that failed in that order and returns APISIX's text.

_TYPE_OK = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
}
_OBJECT_KEYS = ("properties", "additionalProperties", "patternProperties", "minProperties",
                "maxProperties", "dependencies", "required")
_ARRAY_KEYS = ("items", "minItems", "maxItems", "uniqueItems")


def _lua_eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_lua_eq(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_lua_eq(x, y) for x, y in zip(a, b, strict=False))
    return bool(type(a) is type(b) or (_TYPE_OK["number"](a) and _TYPE_OK["number"](b))) \
        and a == b


def _search(pattern: str, s: str) -> bool:
    try:
        return re.search(pattern, s) is not None
    except re.error:
        return True


def api7_error(schema: Any, data: Any, root: Any = None) -> str | None:
    """APISIX's (api7/jsonschema) message for the first thing ``data`` breaks in
    ``schema``, or None when it is valid.  ``$ref`` to ``#/definitions/...`` (or
    ``#/$defs/...``) is followed."""
    if root is None:
        root = schema
    if not isinstance(schema, dict):
        return None if schema is not False else "expect false always"
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        return api7_error(target, data, root)
    for check in (_type, _object, _array, _string, _number, _enum, _compound, _format, _const):
        err = check(schema, data, root)
        if err is not None:
            return err
    return None


def _type(s: dict[str, Any], v: Any, root: Any) -> str | None:
    t = s.get("type")
    if isinstance(t, str):
        if t in _TYPE_OK and not _TYPE_OK[t](v):
            return f"wrong type: expected {t}, got {_lua_type(v)}"
    elif isinstance(t, list) and not any(_TYPE_OK.get(x, lambda _: True)(v) for x in t):
        return f"wrong type: expected one of {', '.join(t)}, got {_lua_type(v)}"
    return None


def _object(s: dict[str, Any], v: Any, root: Any) -> str | None:
    if not isinstance(v, dict) or not any(k in s for k in _OBJECT_KEYS):
        return None
    props: dict[str, Any] = s.get("properties") or {}
    required = [r for r in s.get("required") or () if isinstance(r, str)]
    deps: dict[str, Any] = s.get("dependencies") or {}
    for prop, sub in props.items():
        if prop in v:
            err = api7_error(sub, v[prop], root)
            if err is not None:
                return f"property {_lua_q(prop)} validation failed: {err}"
            err = _dependency(prop, deps.get(prop), v, root)
            if err is not None:
                return err
        elif prop in required:
            return f"property {_lua_q(prop)} is required"
    for prop in required:
        if prop not in props and prop not in v:
            return f"property {_lua_q(prop)} is required"
    for prop, d in deps.items():
        if prop not in props and prop in v:
            err = _dependency(prop, d, v, root)
            if err is not None:
                return err
    addl = s.get("additionalProperties")
    pats: dict[str, Any] = s.get("patternProperties") or {}
    if pats or (addl is not None and addl is not True):
        for key, value in v.items():
            matched = False
            for patt, psub in pats.items():
                if _search(patt, key):
                    err = api7_error(psub, value, root)
                    if err is not None:
                        return f"failed to validate {key} (matching {_lua_q(patt)}): {err}"
                    matched = True
            if key in props or matched or addl is None or addl is True:
                continue
            if addl is False:
                return f"additional properties forbidden, found {key}"
            err = api7_error(addl, value, root)
            if err is not None:
                return f"failed to validate additional property {key}: {err}"
    if "minProperties" in s and len(v) < s["minProperties"]:
        return f"expect object to have at least {s['minProperties']} properties"
    if "maxProperties" in s and len(v) > s["maxProperties"]:
        return f"expect object to have at most {s['maxProperties']} properties"
    return None


def _dependency(prop: str, d: Any, v: dict[str, Any], root: Any) -> str | None:
    if isinstance(d, list):
        for dep in d:
            if dep not in v:
                return f"property {_lua_q(dep)} is required when {_lua_q(prop)} is set"
    elif isinstance(d, dict):
        err = api7_error(d, v, root)
        if err is not None:
            return f"failed to validate dependent schema for {_lua_q(prop)}: {err}"
    return None


def _array(s: dict[str, Any], v: Any, root: Any) -> str | None:
    if not isinstance(v, list) or not any(k in s for k in _ARRAY_KEYS):
        return None
    if "minItems" in s and len(v) < s["minItems"]:
        return f"expect array to have at least {s['minItems']} items"
    if "maxItems" in s and len(v) > s["maxItems"]:
        return f"expect array to have at most {s['maxItems']} items"
    items = s.get("items")
    if isinstance(items, list):
        for i, (sub, item) in enumerate(zip(items, v, strict=False)):
            err = api7_error(sub, item, root)
            if err is not None:
                return f"failed to validate item {i + 1}: {err}"
        extra = s.get("additionalItems")
        if len(v) > len(items):
            if extra is False:
                return "found unexpected extra items in array"
            if isinstance(extra, dict):
                for i in range(len(items), len(v)):
                    err = api7_error(extra, v[i], root)
                    if err is not None:
                        return f"failed to validate additional item {i + 1}: {err}"
    elif isinstance(items, dict):
        for i, item in enumerate(v):
            err = api7_error(items, item, root)
            if err is not None:
                return f"failed to validate item {i + 1}: {err}"
    if s.get("uniqueItems"):
        return _leaf("uniqueItems", s, v)
    return None


def _string(s: dict[str, Any], v: Any, root: Any) -> str | None:
    if not isinstance(v, str):
        return None
    if "minLength" in s and len(v) < s["minLength"]:
        return f"string too short, expected at least {s['minLength']}, got {len(v)}"
    if "maxLength" in s and len(v) > s["maxLength"]:
        return f"string too long, expected at most {s['maxLength']}, got {len(v)}"
    if isinstance(s.get("pattern"), str) and not _search(s["pattern"], v):
        return f"failed to match pattern {_lua_q(s['pattern'])} with {_lua_q(v)}"
    return None


def _number(s: dict[str, Any], v: Any, root: Any) -> str | None:
    if not _TYPE_OK["number"](v):
        return None
    for rule, fails in (("minimum", lambda r: v < r), ("exclusiveMinimum", lambda r: v <= r),
                        ("maximum", lambda r: v > r), ("exclusiveMaximum", lambda r: v >= r)):
        ref = s.get(rule)
        if _TYPE_OK["number"](ref) and fails(ref):
            return f"expected {_num(v)} to be {_RANGE[rule]} {_num(ref)}"
    mof = s.get("multipleOf")
    if _TYPE_OK["number"](mof) and mof and not float(v / mof).is_integer():
        return f"expected {_num(v)} to be a multiple of {_num(mof)}"
    return None


def _enum(s: dict[str, Any], v: Any, root: Any) -> str | None:
    if "enum" in s and not any(_lua_eq(v, e) for e in s["enum"]):
        return "matches none of the enum values"
    return None


def _compound(s: dict[str, Any], v: Any, root: Any) -> str | None:
    for i, sub in enumerate(s.get("allOf") or (), 1):
        err = api7_error(sub, v, root)
        if err is not None:
            return f"allOf {i} failed: {err}"
    if s.get("anyOf") and all(api7_error(sub, v, root) is not None for sub in s["anyOf"]):
        return _leaf("anyOf", s, v)
    if s.get("oneOf"):
        matched = 0
        for i, sub in enumerate(s["oneOf"], 1):
            if api7_error(sub, v, root) is None:
                if matched:
                    return ("value should match only one schema, but matches both schemas "
                            f"{matched} and {i}")
                matched = i
        if not matched:
            return "value should match only one schema, but matches none"
    if "if" in s:
        ok = api7_error(s["if"], v, root) is None
        if ok and "then" in s and api7_error(s["then"], v, root) is not None:
            return "then clause did not match"
        if not ok and "else" in s and api7_error(s["else"], v, root) is not None:
            return "else clause did not match"
    if "not" in s and api7_error(s["not"], v, root) is None:
        return "value wasn't supposed to match schema"
    return None


def _format(s: dict[str, Any], v: Any, root: Any) -> str | None:
    fmt = s.get("format")
    if not isinstance(v, str) or fmt not in _FORMAT_MSG:
        return None
    import ipaddress
    if fmt == "email":
        ok = _search(r"^([A-Za-z0-9_\-\.])+\@([A-Za-z0-9_\-\.])+\.([A-Za-z]{2,4})$", v)
    elif fmt == "hostname":
        ok = _search(r"^[a-zA-Z0-9\-\.]+$", v)
    else:
        cls = ipaddress.IPv4Address if fmt == "ipv4" else ipaddress.IPv6Address
        try:
            cls(v)
            ok = True
        except ValueError:
            ok = False
    return None if ok else _FORMAT_MSG[fmt] + v


def _const(s: dict[str, Any], v: Any, root: Any) -> str | None:
    if "const" in s and not _lua_eq(v, s["const"]):
        return "failed to check const value"
    return None


def schema_message(schema: Any, data: Any,
                   e: fastjsonschema.JsonSchemaValueException | None = None) -> str:
    """The APISIX text for ``data`` failing ``schema``: api7's walk, or, should it find
    nothing (a keyword api7 does not know), the fastjsonschema error ``e`` reworded."""
    err = api7_error(schema, data)
    if err is None and e is not None:
        err = lua_error(e, data)
    return err or "invalid configuration"
