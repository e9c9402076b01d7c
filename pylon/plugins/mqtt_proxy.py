"""mqtt-proxy: read an MQTT CONNECT before proxying, check its protocol, route by client id
(APISIX's stream plugin; stream routes only).

``protocol_name`` (``MQTT``; ``MQIsdp`` for 3.1) and ``protocol_level`` (4 for 3.1.1, 5 for
5.0) are required.  The first packet is peeked (not consumed: the broker receives it as
sent): it must be a CONNECT with that protocol name and level, else the connection is
closed (APISIX: ``return 503``).  Its client id becomes the stream variable
``mqtt_client_id``: an upstream with ``type: chash, key: mqtt_client_id`` sends a client to
the same broker every time (an empty client id leaves the variable unset: chash falls back
to the client address, as in APISIX).
"""

from __future__ import annotations

from typing import Any

from pylon import pdk

name = "mqtt-proxy"
priority = 1000
version = 0.1
#: a stream plugin only (APISIX has it in ``stream_plugins``, not in ``plugins``)
subsystems = ("stream",)

schema = {
    "type": "object",
    "properties": {
        "protocol_name": {"type": "string"},
        "protocol_level": {"type": "integer"},
    },
    "required": ["protocol_name", "protocol_level"],
}

#: the longest CONNECT read (nginx's preread buffer is 16k)
_MAX = 16384


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    """An MQTT variable byte integer at ``pos``: (value, position after it)."""
    value, mult = 0, 1
    for i in range(pos, min(pos + 4, len(data))):
        value += (data[i] & 0x7F) * mult
        mult *= 128
        if not data[i] & 0x80:
            return value, i + 1
    return None


def parse_connect(data: bytes) -> dict[str, Any] | str:
    """The CONNECT packet ``data`` as {protocol, level, client_id}, or why it is not one
    (a short read included)."""
    if not data:
        return "no data"
    if not 16 <= data[0] < 32:
        return f"Received unexpected MQTT packet type+flags: {data[0]}"
    head = _varint(data, 1)
    if head is None:
        return "short packet"
    _, p = head
    try:
        plen = int.from_bytes(data[p:p + 2], "big")
        protocol = data[p + 2:p + 2 + plen].decode("utf-8", "replace")
        p += 2 + plen
        level = data[p]
        p += 1 + 1 + 2                          # connect flags, keep alive
        if level == 5:                          # MQTT 5: properties
            props = _varint(data, p)
            if props is None:
                return "short packet"
            p = props[1] + props[0]
        clen = int.from_bytes(data[p:p + 2], "big")
        if p + 2 + clen > len(data) or p + 2 > len(data):
            return "short packet"
        client_id = data[p + 2:p + 2 + clen].decode("utf-8", "replace")
    except IndexError:
        return "short packet"
    return {"protocol": protocol, "level": level, "client_id": client_id}


async def stream_preread(conf: dict[str, Any], sctx: pdk.StreamContext) -> int | None:
    data = await sctx.peek(5)
    head = _varint(data, 1) if len(data) >= 2 and 16 <= data[0] < 32 else None
    if head is not None:
        data = await sctx.peek(min(head[1] + head[0], _MAX))
    res = parse_connect(data)
    if isinstance(res, str):
        pdk.log.error("mqtt-proxy: failed to parse the CONNECT packet: %s", res)
        return 503
    if res["protocol"] != conf["protocol_name"]:
        pdk.log.error("mqtt-proxy: expect protocol name: %s, but got %s",
                      conf["protocol_name"], res["protocol"])
        return 503
    if res["level"] != conf["protocol_level"]:
        pdk.log.error("mqtt-proxy: expect protocol level: %s, but got %s",
                      conf["protocol_level"], res["level"])
        return 503
    if res["client_id"]:
        sctx.set_var("mqtt_client_id", res["client_id"])
    return None
