"""The node's certificates and when they expire: the Control API's ``GET /v1/certificates``
and the Prometheus gauge ``apisix_ssl_certificate_expiry_seconds`` (both served by the
master, from the configuration it holds: no worker is asked)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .certs import CertFacts, facts, is_pem

#: the id the node config's default certificate (``apisix.ssl.ssl_cert``) is listed under
DEFAULT_ID = "_node_default"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def _certs_of(value: dict[str, Any]) -> list[CertFacts]:
    out = []
    for pem in [value.get("cert"), *(value.get("certs") or [])]:
        f = facts(pem) if is_pem(pem) else None
        if f is not None:
            out.append(f)
    return out


def _id_order(oid: str) -> tuple[int, int, str]:
    return (0, int(oid), "") if oid.isdigit() else (1, 0, oid)


def certificates(ssls: Iterable[tuple[str, Any]], now: float,
                 default_cert: str | None = None) -> list[dict[str, Any]]:
    """Every ssl object (id, stored value) with its certificates' facts, by id; the node's
    default certificate last."""
    out: list[dict[str, Any]] = []
    for oid, value in sorted(ssls, key=lambda kv: _id_order(kv[0])):
        if not isinstance(value, dict):
            continue
        snis = value.get("snis") or ([value["sni"]] if value.get("sni") else [])
        out.append({"id": oid, "type": value.get("type") or "server", "snis": snis,
                    "status": value.get("status", 1),
                    "certs": [f.as_dict(now) for f in _certs_of(value)]})
    if default_cert is not None:
        pem = _read(default_cert)
        f = facts(pem) if pem is not None else None
        out.append({"id": DEFAULT_ID, "type": "server", "snis": [], "status": 1,
                    "file": default_cert, "certs": [f.as_dict(now)] if f else []})
    return out


Labels = tuple[tuple[str, str], ...]


def expiry_rows(listed: list[dict[str, Any]]) -> list[tuple[Labels, float]]:
    """The gauge's samples: (labels, seconds until not_after) per certificate of
    ``certificates()``; negative once expired."""
    rows: list[tuple[Labels, float]] = []
    for obj in listed:
        for c in obj["certs"]:
            rows.append(((("id", obj["id"]), ("type", obj["type"]),
                          ("snis", ",".join(obj["snis"])), ("serial", c["serial"])),
                         float(c["expires_in"])))
    return rows
