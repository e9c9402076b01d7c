"""header-quota: the worked example of docs/writing-a-plugin.md (tested in
tests/plugins/test_writing_a_plugin_example.py)."""

from pylon import pdk

name = "header-quota"
priority = 2450
version = 1.0

schema = {
    "type": "object",
    "properties": {
        "max_headers": {"type": "integer", "minimum": 1, "default": 50},
        "max_bytes": {"type": "integer", "minimum": 1, "default": 8192},
        "upstream_header": {"type": "string", "default": "X-Header-Count"},
    },
    "additionalProperties": False,
}


def check(conf, schema_type):
    if conf["max_bytes"] < conf["max_headers"]:
        raise ValueError("max_bytes must be at least max_headers")


def prepare(conf):
    return (conf["max_headers"], conf["max_bytes"], conf["upstream_header"])


def access(conf, ctx: pdk.Context):
    max_headers, max_bytes, out_header = conf
    headers = ctx.headers()
    size = sum(len(n) + len(v) for n, v in headers)
    if len(headers) > max_headers or size > max_bytes:
        return 431, {"message": f"{len(headers)} headers, {size} bytes: too many"}
    ctx.set_header(out_header, str(len(headers)))
