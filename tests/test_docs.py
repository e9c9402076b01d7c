"""Generated reference docs must match the code they are generated from."""

from pathlib import Path

from pylon.errors import render_docs

ROOT = Path(__file__).resolve().parents[1]


def test_error_code_table_in_docs_is_current():
    assert (ROOT / "docs" / "errors.md").read_text() == render_docs(), \
        "docs/errors.md is stale: run `python -m pylon.errors > docs/errors.md`"


def test_every_error_has_a_unique_detail_code_per_status():
    from pylon.errors import all_errors
    seen: dict[str, int] = {}
    for cls in all_errors():
        assert cls.code == cls.code.lower() and " " not in cls.code
        assert seen.setdefault(cls.code, cls.status) == cls.status, cls.code
