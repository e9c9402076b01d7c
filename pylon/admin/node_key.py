"""First-start Admin API key: generated once, stored in the node config, printed once.

Pylon has no built-in default key (APISIX shipped one for years; it is the classic way into
a gateway).  When ``deployment.admin.admin_key`` is absent and a key is required, a random key
is generated, written into ``conf/config.yaml`` and printed once to the terminal, never to a
log file.  The config file is edited in place, keeping its comments, when its layout allows;
otherwise it is rewritten from its parsed form.
"""

from __future__ import annotations

import re
import secrets
import sys

import yaml

from ..config.loader import read_file
from ..config.persist import write_atomically


def generate_key() -> str:
    return secrets.token_hex(20)


def store_key(config_path: str, key: str) -> None:
    """Add ``admin_key: [{name: admin, key, role: admin}]`` under ``deployment.admin``."""
    with open(config_path, encoding="utf-8") as f:
        text = f.read()
    row = f'{{name: admin, key: "{key}", role: admin}}'
    lines = text.splitlines(keepends=True)
    new = _insert(lines, row)
    if new is None:                              # unusual layout: rewrite from the data
        data = read_file(config_path) or {}
        data.setdefault("deployment", {}).setdefault("admin", {})["admin_key"] = [
            {"name": "admin", "key": key, "role": "admin"}]
        new = yaml.safe_dump(data, sort_keys=False)
    write_atomically(config_path, new.encode("utf-8"), 0o600)   # it now holds a secret


def _insert(lines: list[str], row: str) -> str | None:
    comment = "# generated at first start; keep it secret"
    dep = next((i for i, ln in enumerate(lines) if re.match(r"deployment:\s*(#.*)?$", ln)), None)
    if dep is None:
        return "".join(lines).rstrip("\n") + (
            f"\ndeployment:\n  admin:\n    admin_key:            {comment}\n      - {row}\n")
    end = next((i for i in range(dep + 1, len(lines))
                if lines[i].strip() and not lines[i].startswith((" ", "#"))), len(lines))
    adm = next((i for i in range(dep + 1, end) if re.match(r"  admin:\s*(#.*)?$", lines[i])),
               None)
    if adm is None:
        ins = f"  admin:\n    admin_key:            {comment}\n      - {row}\n"
        return "".join(lines[:dep + 1]) + ins + "".join(lines[dep + 1:])
    if any(re.match(r"    admin_key:", lines[i]) for i in range(adm + 1, end)):
        return None                               # an empty admin_key: leave it to the dump
    ins = f"    admin_key:            {comment}\n      - {row}\n"
    return "".join(lines[:adm + 1]) + ins + "".join(lines[adm + 1:])


def announce(key: str, config_path: str) -> None:
    """Shown once, on the terminal only."""
    print(f"pylon: generated an Admin API key (stored in {config_path}):\n\n    {key}\n\n"
          f"pass it as the X-API-KEY header.", file=sys.stderr, flush=True)
