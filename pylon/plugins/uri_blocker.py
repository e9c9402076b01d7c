"""uri-blocker: deny requests whose URI matches a rule (APISIX).

``block_rules`` (required, unique): PCRE regexes searched in ``$request_uri`` (the path and
query string as the client sent them, not decoded); an empty list blocks every request, as
in APISIX.  ``rejected_code`` (default 403), ``rejected_msg`` (the body is then
``{"error_msg": ...}``; without it the response has no body), ``case_insensitive`` (false).
Runs in the rewrite phase.

The rules are compiled once, joined into one alternation as APISIX does.
"""

from __future__ import annotations

import re
from typing import Any

from pylon import pdk
from pylon.pdk.match import compile_pcre

name = "uri-blocker"
priority = 2900
version = 0.1

schema = {
    "type": "object",
    "properties": {
        "block_rules": {"type": "array",
                        "items": {"type": "string", "minLength": 1, "maxLength": 4096},
                        "uniqueItems": True},
        "rejected_code": {"type": "integer", "minimum": 200, "default": 403},
        "rejected_msg": {"type": "string", "minLength": 1},
        "case_insensitive": {"type": "boolean", "default": False},
    },
    "required": ["block_rules"],
}


def _compile(rule: str, ignore_case: bool = False) -> re.Pattern[str]:
    try:
        return compile_pcre(rule, ignore_case)
    except (re.error, ValueError, OverflowError) as e:
        raise ValueError(f"failed to compile regex {rule!r}: {e}") from None


def check(conf: dict[str, Any], schema_type: str) -> None:
    for rule in conf["block_rules"]:
        _compile(rule)


class Prepared:
    __slots__ = ("reply", "rules")

    def __init__(self, conf: dict[str, Any]) -> None:
        ic = conf["case_insensitive"]
        rules = conf["block_rules"]
        compiled: tuple[re.Pattern[str], ...]
        try:        # one regex, as APISIX concatenates them with "|" (no rules: "", which
            # matches every URI, as in APISIX)
            compiled = (compile_pcre("|".join(rules), ic),)
        except (re.error, ValueError, OverflowError):
            # what PCRE takes joined but Python does not (inline flags mid-pattern, a
            # group name used twice): one regex per rule, same result
            compiled = tuple(_compile(r, ic) for r in rules)
        self.rules = compiled
        msg = conf.get("rejected_msg")
        code = conf["rejected_code"]
        self.reply: Any = (code, {"error_msg": msg}) if msg is not None else code


def prepare(conf: dict[str, Any]) -> Prepared:
    return Prepared(conf)


def rewrite(conf: Prepared, ctx: pdk.Context) -> Any:
    uri = ctx.var("request_uri") or ""
    for r in conf.rules:
        if r.search(uri):
            return conf.reply
    return None
