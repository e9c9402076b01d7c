"""redirect: answer with a redirect instead of proxying, as APISIX's ``redirect`` plugin.

Route (exactly one of ``uri``, ``regex_uri``, ``http_to_https``): ``uri`` (a template with
``$var`` / ``${var}`` nginx variables, ``\\$`` kept literally), ``regex_uri`` ([PCRE,
replacement with ``$1``/``${1}``]: the first match in ``$uri`` is replaced; no match: the
request is proxied as usual), ``http_to_https`` (``https://$host$request_uri``, with the
port of ``plugin_attr.redirect.https_port`` or of a TLS listener unless 443; 301 for
GET/HEAD and 308 otherwise, unless ``X-Forwarded-Proto`` — or else the scheme — is
``https``), ``ret_code`` (302), ``encode_uri`` (percent-encode the part before ``?`` as
nginx's ``ngx.escape_uri`` does), ``append_query_string`` (append the request's query).

Templates and regexes are compiled once per configuration.
"""

from __future__ import annotations

import functools
import random
import re
from typing import Any

from pylon import pdk
from pylon.pdk.match import compile_pcre
from pylon.pdk.template import compile_replacement as _replacement
from pylon.pdk.template import escape_uri, wire_bytes

name = "redirect"
priority = 900
version = 0.1

_TOKENS = (r"(\\\$[0-9a-zA-Z_]+)|"          # \$host: kept literally
           r"\$\{([0-9a-zA-Z_]+)\}|"         # ${host}
           r"\$([0-9a-zA-Z_]+)|"             # $host
           r"(\$|[^\$\\]+)")                 # a lone $ or other text
_TOKEN_RX = re.compile(_TOKENS)

schema = {
    "type": "object",
    "properties": {
        "ret_code": {"type": "integer", "minimum": 200, "default": 302},
        "uri": {"type": "string", "minLength": 2, "pattern": _TOKENS},
        "regex_uri": {
            "description": "params for generating new uri that substitute from client uri, "
                           "first param is regular expression, the second one is uri "
                           "template",
            "type": "array", "maxItems": 2, "minItems": 2,
            "items": {"description": "regex uri", "type": "string"},
        },
        "http_to_https": {"type": "boolean"},
        "encode_uri": {"type": "boolean", "default": False},
        "append_query_string": {"type": "boolean", "default": False},
    },
    "oneOf": [{"required": ["uri"]}, {"required": ["regex_uri"]},
              {"required": ["http_to_https"]}],
}

#: a template part: (True, variable name) or (False, literal text)
Template = tuple[tuple[bool, str], ...]


def parse_template(uri: str) -> Template:
    parts: list[tuple[bool, str]] = []
    for m in _TOKEN_RX.finditer(uri):
        lit1, var2, var3, lit4 = m.groups()
        if var2 or var3:
            parts.append((True, var2 or var3))
        else:
            text = lit1 or lit4
            if parts and not parts[-1][0]:
                parts[-1] = (False, parts[-1][1] + text)
            else:
                parts.append((False, text))
    return tuple(parts)


_HTTPS: Template = parse_template("https://$host$request_uri")


@functools.lru_cache(maxsize=16)
def _https_to(port: int) -> Template:
    return parse_template(f"https://$host:{port}$request_uri")


def https_port() -> int | None:
    """APISIX's port for ``http_to_https``: ``plugin_attr.redirect.https_port``, else one
    of ``apisix.ssl.listen``'s ports (at random, as APISIX), else none (443 is implied)."""
    node = pdk.node()
    port = node.plugin_attr("redirect").get("https_port")
    if port is None:
        ports = node.setting("ssl_ports")
        port = random.choice(ports) if ports else None
    if not isinstance(port, int) or port == 443 or not 0 < port <= 65535:
        return None
    return port


def check(conf: dict[str, Any], schema_type: str) -> None:
    rx = conf.get("regex_uri")
    if rx:
        try:
            pat = compile_pcre(rx[0])
            rep = _replacement(rx[1])
            if rep.groups > pat.groups:
                raise ValueError(f"unknown capture group ${rep.groups}")
        except (re.error, ValueError) as e:
            raise ValueError(f"invalid regex_uri ({rx[0]}, {rx[1]}), err:{e}") from None
    if conf.get("http_to_https") and conf.get("append_query_string"):
        raise ValueError("only one of `http_to_https` and `append_query_string` can be "
                         "configured.")


class Conf:
    __slots__ = ("append", "code", "encode", "https", "regex", "replace", "uri")

    def __init__(self, conf: dict[str, Any]) -> None:
        self.code: int = conf["ret_code"]
        self.uri = parse_template(conf["uri"]) if conf.get("uri") else None
        rx = conf.get("regex_uri")
        self.regex = compile_pcre(rx[0]) if rx else None
        self.replace = _replacement(rx[1]) if rx else None
        self.https = bool(conf.get("http_to_https"))
        self.encode: bool = conf["encode_uri"]
        self.append: bool = conf["append_query_string"]


def prepare(conf: dict[str, Any]) -> Conf:
    return Conf(conf)


def render(tmpl: Template, ctx: pdk.Context) -> str:
    out = []
    for is_var, s in tmpl:
        if is_var:
            v = ctx.var(s) if s != "is_args" else ("?" if ctx.head.query else "")
            if v is not None:
                out.append(str(v))
        else:
            out.append(s)
    return "".join(out)


def rewrite(conf: Conf, ctx: pdk.Context) -> Any:
    code = conf.code
    tmpl = conf.uri
    if conf.https:
        scheme = ctx.header("X-Forwarded-Proto") or ctx.scheme
        if scheme != "https":
            port = https_port()
            tmpl = _HTTPS if port is None else _https_to(port)
            code = 301 if ctx.method in ("GET", "HEAD") else 308
    if tmpl is not None:
        new = render(tmpl, ctx)
    elif conf.regex is not None and conf.replace is not None:
        new, n = conf.regex.subn(conf.replace, ctx.uri, count=1)
        if n < 1:
            return None
    else:
        return None
    q = new.find("?")
    if conf.encode:
        new = escape_uri(new) if q < 0 else escape_uri(new[:q]) + new[q:]
    if conf.append:
        query = ctx.head.query
        if query:
            new += ("?" if q < 0 else "&") + query.decode("latin-1")
    return code, None, {"Location": wire_bytes(new)}
