from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.harness import quick_gateway_factory
from tests.server_process import free_port

from .dnsmasq import Dnsmasq, find_dnsmasq

__all__ = ["quick_gateway_factory"]


class Named:
    """An origin on ``ip:port`` that answers every request with its name (which node a
    request reached)."""

    def __init__(self, name: str, ip: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        self.hits = 0
        owner = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner.hits += 1
                body = owner.name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in ip else socket.AF_INET

        self.srv = Server((ip, port), H)
        self.srv.daemon_threads = True
        self.ip = ip
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def named() -> Iterator[Callable[..., Named]]:
    made: list[Named] = []

    def make(name: str, ip: str = "127.0.0.1", port: int = 0) -> Named:
        n = Named(name, ip, port)
        made.append(n)
        return n

    yield make
    for n in made:
        n.close()


@pytest.fixture
def dnsmasq() -> Iterator[Dnsmasq]:
    if find_dnsmasq() is None:
        pytest.skip("dnsmasq not installed (Debian package dnsmasq-base; scripts/test "
                    "installs it)")
    with Dnsmasq(ttl=1) as d:
        yield d


@pytest.fixture
def gateway_factory(quick_gateway_factory: Any) -> Any:
    return quick_gateway_factory


def control_node(port: int | None = None) -> dict[str, Any]:
    """Node config that turns the Control API on (on a free port)."""
    return {"pylon": {"enable_control": True,
                      "control": {"ip": "127.0.0.1", "port": port or free_port()}}}
