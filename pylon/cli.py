"""Command line: ``pylon COMMAND``.

- ``start``: the master and its workers, in the foreground (writes the embedded default
  configuration to ``PREFIX/conf`` on a first start without one);
- ``validate``: check the node config and the declarative (standalone) config;
- ``reload``: SIGHUP to the running master: re-read all configuration;
- ``stop``: SIGTERM to the running master (or drain the orphaned workers of a killed one);
- ``admin``: call a running node's Admin API (``get|list|put|post|patch|delete``);
- ``explain``: which route a request matches and why (the running node's, or ``-f FILE``);
- ``version``: print the version;
- ``_worker``: internal, one worker process, started by the master.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import signal
import sys
import time
from importlib import resources
from typing import Any

from . import __version__, _native
from .errors import ConfigError
from .node import Node
from .pdk.runtime import install

DEFAULT_CONF = "conf/config.yaml"


def _paths(args: argparse.Namespace) -> tuple[str, str]:
    prefix = os.path.abspath(args.prefix or os.getcwd())
    conf = args.config or os.path.join(prefix, DEFAULT_CONF)
    return prefix, os.path.abspath(conf)


def _init_defaults(prefix: str, conf: str) -> None:
    """First start without a config: write the embedded defaults (as `apisix init` does)."""
    if os.path.exists(conf):
        return
    os.makedirs(os.path.dirname(conf), exist_ok=True)
    pkg = resources.files("pylon") / "conf"
    with resources.as_file(pkg / "config.yaml") as src:
        shutil.copyfile(src, conf)
    target = os.path.join(prefix, "conf", "pylon.yaml")
    if not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with resources.as_file(pkg / "pylon.yaml") as src:
            shutil.copyfile(src, target)
    print(f"pylon: wrote the default configuration to {os.path.dirname(conf)}/", file=sys.stderr)


def _read_pid(settings: Any) -> int | None:
    """The pid of the node's live master: the pid file's, while a master holds its lock (a
    pid file left by a killed master may name a recycled pid, which must not count)."""
    try:
        fd = os.open(settings.pid_file, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None                  # nobody holds it: no master
        except BlockingIOError:
            pass
        return int(os.read(fd, 64).strip())
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def _lock_pid_file(path: str) -> int | None:
    """The pid file, locked (``flock``, held for the master's life) and holding our pid;
    None when another master holds it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def cmd_start(args: argparse.Namespace) -> int:
    import uvloop

    from .logs import setup_logging
    from .server.master import Master

    prefix, conf = _paths(args)
    if args.config is None:
        _init_defaults(prefix, conf)
    try:
        node = Node.load(conf, prefix)
    except ConfigError as e:
        print(f"pylon: invalid node config: {e}", file=sys.stderr)
        return 1
    settings = node.settings
    assert settings is not None
    install(node)                        # the master checks plugin configurations too
    setup_logging(settings, "master")
    for w in node.warnings:
        print(f"pylon: warning: {conf}: {w}", file=sys.stderr)
    lock = _lock_pid_file(settings.pid_file)
    if lock is None:
        print(f"pylon: already running (pid {_read_pid(settings)}, {settings.pid_file})",
              file=sys.stderr)
        return 1
    # workers of a master that died, still serving: we take their sockets, then drain them
    from .server.takeover import find_orphans
    orphans = find_orphans(settings.pid_file)
    master = Master(node, conf, args.workers, orphans)
    from .ratelimit.local import node_dir, release_node_dir
    # shared counters (the orphans' when taking over); workers inherit the env
    shm = node_dir(create_for_pid=os.getpid(),
                   adopt=next((o.shm for o in orphans if o.shm), None))
    try:
        return uvloop.run(master.run())
    except OSError as e:
        print(f"pylon: cannot start: {e}", file=sys.stderr)
        return 1
    finally:
        release_node_dir(shm)
        try:
            if _read_pid(settings) in (os.getpid(), None):
                os.unlink(settings.pid_file)
        except OSError:
            pass
        os.close(lock)


def cmd_validate(args: argparse.Namespace) -> int:
    from .server.master import load_standalone
    from .server.worker import compile_doc

    prefix, conf = _paths(args)
    try:
        node = Node.load(conf, prefix)
    except ConfigError as e:
        print(f"{conf}: {e}")
        return 1
    settings = node.settings
    assert settings is not None
    install(node)
    for w in node.warnings:
        print(f"{conf}: warning: {w}")
    path = settings.standalone_file
    try:
        doc = load_standalone(path)
    except (OSError, ConfigError) as e:
        print(f"{path}: {e.strerror if isinstance(e, OSError) else e}")
        return 1
    compiled = compile_doc(doc, node)
    for r in compiled.rejected:
        print(f"{path}: {r}")
    if compiled.rejected:
        print(f"{len(compiled.rejected)} error(s); {len(compiled.routes)} route(s) valid")
        return 1
    print(f"{conf}: ok; {path}: ok ({len(compiled.routes)} routes, "
          f"{len(compiled.plans)} upstreams)")
    return 0


def _signal(args: argparse.Namespace, sig: int) -> tuple[int, int | None, Any]:
    prefix, conf = _paths(args)
    try:
        settings = Node.load(conf, prefix, plugins=False).settings
    except ConfigError as e:
        print(f"pylon: invalid node config: {e}", file=sys.stderr)
        return 1, None, None
    assert settings is not None
    pid = _read_pid(settings)
    if pid is None:
        print(f"pylon: not running (no live pid in {settings.pid_file})", file=sys.stderr)
        return 1, None, settings
    os.kill(pid, sig)
    return 0, pid, settings


def cmd_reload(args: argparse.Namespace) -> int:
    rc, pid, _ = _signal(args, signal.SIGHUP)
    if rc == 0:
        print(f"pylon: reload signalled (pid {pid})")
    return rc


def _stop_orphans(settings: Any, timeout: float) -> int:
    """No master: drain the node's orphaned workers (those of a master that was killed),
    if any; how many."""
    import asyncio

    from .server.takeover import find_orphans
    orphans = find_orphans(settings.pid_file)
    for o in orphans:
        for sock in o.socks:
            sock.close()
    told = [o for o in orphans if o.drain()]

    async def wait() -> list[bool]:
        return await asyncio.gather(*(o.gone(timeout) for o in told))

    left = sum(not ok for ok in asyncio.run(wait())) if told else 0
    if left:
        print(f"pylon: {left} orphaned workers still draining after {timeout:.0f} s",
              file=sys.stderr)
    return len(told)


def cmd_stop(args: argparse.Namespace) -> int:
    rc, pid, settings = _signal(args, signal.SIGTERM)
    if rc and settings is not None:
        n = _stop_orphans(settings, args.timeout)
        if n:
            print(f"pylon: no master; drained {n} orphaned workers")
            return 0
    if rc or pid is None:
        return rc
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        # the master removes its pid file as its last step; checking it too means a master
        # whose parent has not reaped it yet (a zombie still answers kill 0) counts as stopped
        if _read_pid(settings) != pid:
            print("pylon: stopped")
            return 0
        time.sleep(0.1)
    print(f"pylon: pid {pid} still draining after {args.timeout:.0f} s", file=sys.stderr)
    return 1


def _admin_target(args: argparse.Namespace) -> tuple[str, str | None] | int:
    """The Admin API URL and key: --url / --key / $PYLON_ADMIN_KEY, else the node config."""
    prefix, conf = _paths(args)
    key = args.key or os.environ.get("PYLON_ADMIN_KEY")
    url = args.url
    if url is None or key is None:
        try:
            settings = Node.load(conf, prefix, plugins=False).settings
        except ConfigError as e:
            print(f"pylon: invalid node config: {e}", file=sys.stderr)
            return 1
        assert settings is not None
        host, port = settings.admin_listen
        if url is None:
            url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        if key is None:
            admins = [k for k in settings.admin_keys if k["role"] == "admin"] or \
                settings.admin_keys
            key = admins[0]["key"] if admins else None
    return url, key


def _admin_request(url: str, key: str | None, method: str, path: str,
                   body: bytes | None = None) -> tuple[int, Any] | int:
    """(status, decoded JSON answer) from the Admin API, or exit code 1 when unreachable."""
    import http.client
    import json
    from urllib.parse import urlsplit

    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 9180, timeout=30)
    try:
        conn.request(method, path, body=body,
                     headers={"X-API-KEY": key or "", "Content-Type": "application/json"})
        r = conn.getresponse()
        raw = r.read()
    except OSError as e:
        print(f"pylon: cannot reach the Admin API at {url}: {e}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    try:
        return r.status, (json.loads(raw) if raw else {})
    except ValueError:
        return r.status, {"error_msg": raw.decode("utf-8", "replace")}


def cmd_explain(args: argparse.Namespace) -> int:
    """Which route a request would match, why the others do not, and its plugin chain."""
    import json
    from urllib.parse import urlencode

    query: dict[str, str] = {"method": args.method.upper(), "uri": args.uri}
    if args.host:
        query["host"] = args.host
    if args.remote_addr:
        query["remote_addr"] = args.remote_addr
    for h in args.header or ():
        name, sep, value = h.partition(":")
        if not sep:
            print(f"pylon: bad header {h!r} (use 'Name: value')", file=sys.stderr)
            return 2
        query["header_" + name.strip().lower().replace("-", "_")] = value.strip()
    for c in args.cookie or ():
        name, _, value = c.partition("=")
        query["cookie_" + name.strip()] = value
    if args.verbose:
        query["verbose"] = "1"
    if args.file:
        from .config.explain import explain_offline
        from .config.loader import read_file
        prefix, conf = _paths(args)
        try:
            node = Node.load(conf, prefix)
            assert node.settings is not None
            kind = node.settings.router
        except ConfigError:              # no node config: the default router and plugins
            from .proxy.registry import load
            node = Node(plugins=load())
            kind = "radixtree_host_uri"
        install(node)
        try:
            result = explain_offline(read_file(args.file), kind, query, node.plugins)
        except (OSError, ConfigError, ValueError) as e:
            print(f"pylon: {e}", file=sys.stderr)
            return 1
        status = 200
    else:
        target = _admin_target(args)
        if isinstance(target, int):
            return target
        answer = _admin_request(*target, "GET", "/apisix/admin/explain?" + urlencode(query))
        if isinstance(answer, int):
            return answer
        status, result = answer
        if status != 200:
            print(f"pylon: {status}: {result.get('error_msg', result)}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        from .config.explain import format_text
        sys.stdout.write(format_text(result))
    return 0 if status == 200 else 1


def cmd_admin(args: argparse.Namespace) -> int:
    """A scriptable client of a running node's Admin API."""
    import json

    target = _admin_target(args)
    if isinstance(target, int):
        return target
    url, key = target
    path = f"/apisix/admin/{args.resource}" + (f"/{args.id}" if args.id else "")
    method = {"get": "GET", "list": "GET", "put": "PUT", "post": "POST", "patch": "PATCH",
              "delete": "DELETE"}[args.verb]
    if args.verb in ("get", "delete") and not args.id:
        print(f"pylon: admin {args.verb} needs an id", file=sys.stderr)
        return 2
    body = None
    if args.verb in ("put", "post", "patch"):
        if not args.file:
            print(f"pylon: admin {args.verb} needs -f FILE (JSON or YAML; - for stdin)",
                  file=sys.stderr)
            return 2
        from .config.loader import parse_text
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file) as f:
                text = f.read()
        try:
            body = json.dumps(parse_text(text, args.file)).encode()
        except ConfigError as e:
            print(f"pylon: {e}", file=sys.stderr)
            return 2
    if args.force:
        path += "?force=true"
    answer = _admin_request(url, key, method, path, body)
    if isinstance(answer, int):
        return answer
    status, out = answer
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0 if 200 <= status < 300 else 1


def cmd_version(args: argparse.Namespace) -> int:
    print(f"pylon {__version__}, {_native.describe()}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from .server.worker import run_worker

    prefix, conf = _paths(args)
    run_worker(Node.load(conf, prefix), args.slot, [int(x) for x in args.fds.split(",") if x],
               args.ctl)
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-p", "--prefix", metavar="DIR",
                        help="working directory for relative paths (default: current directory)")
    common.add_argument("-c", "--config", metavar="FILE",
                        help=f"node configuration (default: PREFIX/{DEFAULT_CONF})")
    ap = argparse.ArgumentParser(
        prog="pylon", description="Pylon API gateway.",
        epilog="Run 'pylon COMMAND --help' for a command's options.")
    ap.add_argument("-V", "--version", action="version", version=f"pylon {__version__}")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("start", parents=[common], help="start the gateway in the foreground",
                       description="Start the master and its workers in the foreground. "
                       "Without a config, the embedded defaults are written to PREFIX/conf.")
    p.add_argument("-w", "--workers", type=int, metavar="N",
                   help="number of worker processes (overrides pylon.workers)")
    p.set_defaults(fn=cmd_start)
    p = sub.add_parser("validate", parents=[common], help="check node and declarative config",
                       description="Check the node config and the declarative config; print "
                       "each error with its path; exit 1 when anything is invalid.")
    p.set_defaults(fn=cmd_validate)
    p = sub.add_parser("reload", parents=[common], help="re-read all configuration (SIGHUP)")
    p.set_defaults(fn=cmd_reload)
    p = sub.add_parser("stop", parents=[common], help="drain in-flight requests and stop")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default 300)")
    p.set_defaults(fn=cmd_stop)
    p = sub.add_parser("admin", parents=[common], help="call a running node's Admin API",
                       description="Call the Admin API of a running node (address and key "
                       "from the node config, or --url / --key / $PYLON_ADMIN_KEY). Prints "
                       "the JSON answer; exit 1 when it is an error.")
    p.add_argument("verb", choices=("get", "list", "put", "post", "patch", "delete"))
    p.add_argument("resource", help="routes, services, upstreams, consumers, ssls, ...")
    p.add_argument("id", nargs="?")
    p.add_argument("-f", "--file", help="request body, JSON or YAML (- for stdin)")
    p.add_argument("--url", help="Admin API base URL (default: from deployment.admin)")
    p.add_argument("--key", help="API key (default: the node config's first admin key)")
    p.add_argument("--force", action="store_true", help="delete even while referenced")
    p.set_defaults(fn=cmd_admin)
    p = sub.add_parser("explain", parents=[common], help="which route a request matches, and why",
                       description="Explain how a request would be routed: the route it "
                       "matches, why the other candidates do not, its upstream and plugin "
                       "chain. Asks the running node (its live config), or compiles -f FILE.")
    p.add_argument("method", nargs="?", default="GET", help="HTTP method (default GET)")
    p.add_argument("uri", help="request path, with ?query if any")
    p.add_argument("--host", help="Host header")
    p.add_argument("--remote-addr", help="client address (default 127.0.0.1)")
    p.add_argument("-H", "--header", action="append", help="'Name: value' (repeatable)")
    p.add_argument("--cookie", action="append", help="name=value (repeatable)")
    p.add_argument("-f", "--file", help="explain against this standalone file, offline")
    p.add_argument("--verbose", action="store_true", help="list routes whose uri differs too")
    p.add_argument("--json", action="store_true", help="print the JSON result")
    p.add_argument("--url", help="Admin API base URL (default: from deployment.admin)")
    p.add_argument("--key", help="API key (default: the node config's first admin key)")
    p.set_defaults(fn=cmd_explain)
    p = sub.add_parser("version", help="print the version")
    p.set_defaults(fn=cmd_version)
    # internal, started by the master; no help= so it is not listed (argparse would print
    # "==SUPPRESS==" for help=argparse.SUPPRESS on a sub-command)
    p = sub.add_parser("_worker", parents=[common])
    p.add_argument("--slot", type=int, required=True)
    p.add_argument("--fds", required=True)
    p.add_argument("--ctl", type=int, required=True)
    p.set_defaults(fn=cmd_worker)
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.fn(args))


if __name__ == "__main__":
    main()
