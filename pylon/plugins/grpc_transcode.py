"""grpc-transcode: an HTTP/1.1 (or HTTP/2) JSON request as a unary gRPC call (APISIX).

The route's upstream is a gRPC server (``scheme: grpc`` / ``grpcs``).  ``access`` finds
``service`` / ``method`` in the ``protos`` object ``proto_id``, builds the request message
from the JSON body (``application/json`` on POST/PUT/PATCH), else the form body (POST), else
the query arguments -- the fields of the input message by name, numbers and booleans from
their text -- and sends it upstream as ``POST /<service>/<method>`` with
``content-type: application/grpc`` (``grpc-timeout`` from ``deadline`` in ms when set).
The reply message becomes the JSON body; a ``grpc-status`` other than 0 in the response
head (a Trailers-Only answer) becomes the HTTP status as APISIX maps it (Google's API error
model: NOT_FOUND 404, UNAVAILABLE 503 ... unknown ones 599), and with
``show_status_in_body`` the body is ``{"error": <google.rpc.Status>}`` from
``grpc-status-details-bin`` (its ``details`` decoded as ``status_detail_type``, a message of
the proto, when given).

``pb_option`` (lua-protobuf's names): ``enum_as_name`` / ``enum_as_value``,
``int64_as_number`` / ``int64_as_string`` / ``int64_as_hexstring``,
``auto_default_values`` / ``use_default_values`` (every field, defaults included; proto3's
auto is the same) / ``no_default_values`` / ``use_default_metatable`` (as auto);
``enable_hooks`` / ``disable_hooks`` are accepted and mean nothing here.

As APISIX: a missing proto leaves the request as it is (logged); an unknown method answers
503, a request that does not fit the message 400.  Differs: ``bytes`` fields are base64 in
JSON (protobuf's JSON mapping; lua-protobuf passes raw bytes), and a JSON body's nested
objects fill nested messages (APISIX reads nested fields from the top-level table).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import parse_qsl

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from pylon import pdk
from pylon.pdk import protos

name = "grpc-transcode"
priority = 506
version = 0.1

_PB_OPTIONS = [
    {"description": "int64 as result", "type": "string",
     "enum": ["int64_as_number", "int64_as_string", "int64_as_hexstring"]},
    {"description": "enum as result", "type": "string",
     "enum": ["enum_as_name", "enum_as_value"]},
    {"description": "default values option", "type": "string",
     "enum": ["auto_default_values", "no_default_values", "use_default_values",
              "use_default_metatable"]},
    {"description": "hooks option", "type": "string",
     "enum": ["enable_hooks", "disable_hooks"]},
]

schema = {
    "type": "object",
    "properties": {
        "proto_id": {"anyOf": [
            {"type": "string", "minLength": 1, "maxLength": 64,
             "pattern": r"^[a-zA-Z0-9-_.]+$"},
            {"type": "integer", "minimum": 1}]},
        "service": {"description": "the grpc service name", "type": "string"},
        "method": {"description": "the method name in the grpc service.", "type": "string"},
        "deadline": {"description": "deadline for grpc, millisecond", "type": "number",
                     "default": 0},
        "pb_option": {"type": "array", "items": {"type": "string", "anyOf": _PB_OPTIONS},
                      "minItems": 1,
                      "default": ["enum_as_name", "int64_as_number", "auto_default_values",
                                  "disable_hooks"]},
        "show_status_in_body": {
            "description": "show decoded grpc-status-details-bin in response body",
            "type": "boolean", "default": False},
        "status_detail_type": {
            "description": "the message type of the grpc-status-details-bin's details part, "
                           "if not given, the details part will not be decoded",
            "type": "string"},
    },
    "additionalProperties": True,
    "required": ["proto_id", "service", "method"],
}

#: APISIX's grpc-status -> HTTP status (Google's API error model); others: 599
STATUS_REL = {"1": 499, "2": 500, "3": 400, "4": 504, "5": 404, "6": 409, "7": 403,
              "8": 429, "9": 400, "10": 409, "11": 400, "12": 501, "13": 500, "14": 503,
              "15": 500, "16": 401}
_INT64 = frozenset(("int64", "uint64", "sint64", "fixed64", "sfixed64"))
_BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))
#: what protobuf raises on data that does not fit a message
_PB_ERRORS = (DecodeError, json_format.ParseError, KeyError, TypeError, ValueError)


class _Opts:
    __slots__ = ("enum_ints", "int64", "defaults")

    def __init__(self, options: list[str]) -> None:
        self.enum_ints = False
        self.int64 = "number"
        self.defaults = True
        for o in options:
            if o in ("enum_as_name", "enum_as_value"):
                self.enum_ints = o == "enum_as_value"
            elif o.startswith("int64_as_"):
                self.int64 = o[9:]
            elif o == "no_default_values":
                self.defaults = False
            elif o in ("auto_default_values", "use_default_values", "use_default_metatable"):
                self.defaults = True


class _Conf:
    __slots__ = ("proto_id", "service", "method", "deadline", "opts", "show_status",
                 "detail_type", "path")

    def __init__(self, conf: dict[str, Any]) -> None:
        self.proto_id = conf["proto_id"]
        self.service = conf["service"]
        self.method = conf["method"]
        self.deadline = conf.get("deadline") or 0
        self.opts = _Opts(conf.get("pb_option") or [])
        self.show_status = bool(conf.get("show_status_in_body"))
        self.detail_type: str | None = conf.get("status_detail_type")
        self.path = f"/{self.service}/{self.method}"


def prepare(conf: dict[str, Any]) -> _Conf:
    return _Conf(conf)


# ------------------------------------------------------------------ request → message
def _request_table(ctx: pdk.Context, body: bytes) -> tuple[dict[str, Any], bool]:
    """APISIX's ``get_request_table``: JSON body, form body, or query args; and whether the
    values are text (to be read by field type)."""
    method = ctx.method
    ct = ctx.header("content-type") or ""
    if "application/json" in ct and method in _BODY_METHODS and body:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict):
            return data, False
    if method == "POST":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        return dict(parse_qsl(text, keep_blank_values=True)), True
    return dict(ctx.args()), True


def _from_text(field: Any, value: Any) -> Any:
    """A query / form value (text) as the field's JSON value."""
    if not isinstance(value, str):
        return value
    t = field.type
    if t == field.TYPE_BOOL:
        return {"true": True, "false": False, "1": True, "0": False}.get(value.lower(), value)
    if t in (field.TYPE_DOUBLE, field.TYPE_FLOAT):
        try:
            return float(value)
        except ValueError:
            return value
    if t == field.TYPE_MESSAGE or t == field.TYPE_STRING or t == field.TYPE_BYTES:
        return value
    if t == field.TYPE_ENUM:
        return int(value) if value.lstrip("-").isdigit() else value
    try:
        return int(value, 0)
    except ValueError:
        return value


def encode_request(ps: protos.ProtoSet, m: Any, table: dict[str, Any], text: bool) -> bytes:
    desc = m.input_type
    data: dict[str, Any] = {}
    for f in desc.fields:
        for key in (f.name, f.json_name):
            if key in table:
                v = table[key]
                data[f.name] = _from_text(f, v) if text else v
                break
    msg = ps.message_class(desc.full_name)()
    json_format.ParseDict(data, msg, ignore_unknown_fields=True,
                          descriptor_pool=ps.pool)
    return msg.SerializeToString()


# ------------------------------------------------------------------ message → JSON
def _fix_int64(desc: Any, doc: Any, how: str) -> Any:
    """json_format writes 64-bit integers as strings; lua-protobuf as numbers (default)."""
    if not isinstance(doc, dict):
        return doc
    for f in desc.fields:
        if f.name not in doc:
            continue
        v = doc[f.name]
        if f.message_type is not None:
            if f.message_type.GetOptions().map_entry:
                vf = f.message_type.fields_by_name["value"]
                if vf.message_type is not None:
                    doc[f.name] = {k: _fix_int64(vf.message_type, x, how) for k, x in v.items()}
                continue
            if isinstance(v, list):
                doc[f.name] = [_fix_int64(f.message_type, x, how) for x in v]
            else:
                doc[f.name] = _fix_int64(f.message_type, v, how)
        elif f.type in (f.TYPE_INT64, f.TYPE_UINT64, f.TYPE_SINT64, f.TYPE_FIXED64,
                        f.TYPE_SFIXED64) and how != "string":
            conv = int if how == "number" else _hex
            doc[f.name] = [conv(x) for x in v] if isinstance(v, list) else conv(v)
    return doc


def _hex(s: str) -> str:
    return "#" + hex(int(s))


def to_json(ps: protos.ProtoSet, full_name: str, data: bytes, opts: _Opts) -> Any:
    msg = ps.message_class(full_name).FromString(data)
    doc = json_format.MessageToDict(
        msg, preserving_proto_field_name=True, use_integers_for_enums=opts.enum_ints,
        always_print_fields_with_no_presence=opts.defaults, descriptor_pool=ps.pool)
    return _fix_int64(msg.DESCRIPTOR, doc, opts.int64)


def _status_body(ps: protos.ProtoSet, details_bin: str, detail_type: str | None
                 ) -> tuple[bytes, str | None]:
    """``{"error": google.rpc.Status}`` from ``grpc-status-details-bin``, or an error."""
    try:
        raw = base64.b64decode(details_bin + "=" * (-len(details_bin) % 4))
    except (binascii.Error, ValueError):
        return b"grpc-status-details-bin is not base64 format", "not base64"
    try:
        st = protos.rpc_status(raw)
    except _PB_ERRORS as e:
        msg = "failed to call pb.decode to decode grpc-status-details-bin"
        return msg.encode(), f"{msg}, err: {e}"
    err: dict[str, Any] = {"code": st.code, "message": st.message}
    details: list[Any] = []
    for d in st.details:
        if detail_type:
            try:
                cls = ps.message_class(detail_type)
                details.append(json_format.MessageToDict(
                    cls.FromString(d.value), preserving_proto_field_name=True,
                    descriptor_pool=ps.pool))
            except _PB_ERRORS as e:
                msg = "failed to call pb.decode to decode details in grpc-status-details-bin"
                return msg.encode(), f"{msg}, err: {e}"
        else:
            details.append({"type_url": d.type_url,
                            "value": base64.b64encode(d.value).decode()})
    err["details"] = details
    return json.dumps({"error": err}, separators=(",", ":")).encode(), None


# ------------------------------------------------------------------ hooks
async def access(conf: _Conf, ctx: pdk.Context) -> Any:
    ps = protos.find(ctx, conf.proto_id)
    if ps is None:
        pdk.log.error("proto load error: failed to find proto by id: %s", conf.proto_id)
        return None
    m = ps.method(conf.service, conf.method)
    if m is None:
        pdk.log.error("transform request error: Undefined service method: %s/%s end",
                      conf.service, conf.method)
        return 503
    body = await ctx.read_body()
    table, text = _request_table(ctx, body)
    try:
        encoded = encode_request(ps, m, table, text)
    except _PB_ERRORS as e:
        pdk.log.error("transform request error: failed to encode request data to "
                      "protobuf: %s", e)
        return 400
    ctx.store[protos.CONVERTED] = True
    ctx.set_method("POST")
    ctx.set_uri(conf.path, {})
    ctx.set_body(protos.frame(encoded))
    ctx.set_headers({"content-type": "application/grpc", "te": "trailers",
                     "content-length": None, "transfer-encoding": None,
                     "grpc-timeout": f"{conf.deadline:g}m" if conf.deadline > 0 else None})
    ctx.store[name] = (ps, m)
    return None


def header_filter(conf: _Conf, ctx: pdk.Context) -> None:
    if ctx.status >= 300 or name not in ctx.store:
        return
    ctx.set_resp_header("content-type", "application/json")
    ctx.set_resp_header("content-length", None)
    ctx.body_will_change()
    status = ctx.resp_header("grpc-status")
    if status is not None and status != "0":
        ctx.status = STATUS_REL.get(status, 599)
    else:       # (the status comes in trailers after the body)
        ctx.set_resp_header("trailer", "grpc-status, grpc-message")
    ctx.store[name + ".body"] = []


def body_filter(conf: _Conf, ctx: pdk.Context, chunk: bytes, last: bool) -> bytes | None:
    held: list[bytes] | None = ctx.store.get(name + ".body")
    if held is None:
        return None
    if chunk:
        held.append(chunk)
    if not last:
        return b""
    ps, m = ctx.store[name]
    body = b"".join(held)
    if ctx.status >= 300:
        details = ctx.resp_header("grpc-status-details-bin")
        if not conf.show_status or details is None:
            return body
        out, err = _status_body(ps, details, conf.detail_type)
        if err is not None:
            pdk.log.error("transform response error: %s", err)
        return out
    msgs = protos.messages(body)
    try:
        doc = to_json(ps, m.output_type.full_name, msgs[0] if msgs else b"", conf.opts)
    except _PB_ERRORS as e:
        pdk.log.error("transform response error: failed to decode response data by "
                      "protobuf: %s", e)
        return b"failed to decode response data by protobuf"
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
