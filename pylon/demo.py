"""A tiny example origin: answers every request with a JSON echo of what it received.

``python -m pylon.demo --port 9081`` — used by ``scripts/start`` so the bundled example
route has something real behind it, and handy for seeing the X-Forwarded-* headers Pylon adds.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        out = json.dumps({"method": self.command, "path": self.path,
                          "headers": dict(self.headers.items()),
                          "body": body.decode("utf-8", "replace")}, indent=2).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9081)
    a = ap.parse_args()
    ThreadingHTTPServer((a.host, a.port), Echo).serve_forever()


if __name__ == "__main__":
    main()
