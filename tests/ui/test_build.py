"""The committed dashboard build (pylon/admin/ui_dist) matches its sources (ui/): the build
records the SHA-256 of the sources (ui/build-hash.mjs); a change to ui/ without
`npm run build` fails here.  And the build is self-contained: no other origin named."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "ui"
DIST = ROOT / "pylon" / "admin" / "ui_dist"
TOP = ["index.html", "package.json", "package-lock.json", "vite.config.js", "build-hash.mjs"]


def source_hash() -> tuple[str, list[str]]:
    """As ui/build-hash.mjs: SHA-256 over the sorted files, each "<path>\\0<bytes>\\0"."""
    files = sorted(TOP + [p.relative_to(UI).as_posix() for p in (UI / "src").rglob("*")
                          if p.is_file()])
    h = hashlib.sha256()
    for f in files:
        h.update(f.encode() + b"\0")
        h.update((UI / f).read_bytes())
        h.update(b"\0")
    return h.hexdigest(), files


def test_the_committed_build_matches_the_sources():
    recorded = json.loads((DIST / "build.json").read_text())
    digest, files = source_hash()
    assert recorded["files"] == files
    assert recorded["source_sha256"] == digest, (
        "ui/ changed since pylon/admin/ui_dist was built: run `cd ui && npm ci && npm run "
        "build` and commit the result")


def test_the_build_names_no_other_origin_and_its_files_exist():
    index = (DIST / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', index)
    assert refs and all(r.startswith("/ui/") or r.startswith("data:") for r in refs), refs
    for r in refs:
        if r.startswith("/ui/"):
            assert (DIST / r[len("/ui/"):]).is_file(), r
    for f in (DIST / "assets").iterdir():
        text = f.read_text(errors="replace")
        assert not re.search(r"https?://(?!www\.w3\.org/)[a-z0-9.-]+\.[a-z]{2,}", text), f


def test_the_lockfile_pins_every_package():
    lock = json.loads((UI / "package-lock.json").read_text())
    pkgs = {k: v for k, v in lock["packages"].items() if k}
    assert pkgs and all(v.get("version") and v.get("integrity") for v in pkgs.values()
                        if not v.get("link"))
