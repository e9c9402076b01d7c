"""Read the standalone file (YAML or JSON) into plain data.

YAML is parsed with libyaml (``CSafeLoader``) and duplicate keys are refused, because PyYAML
otherwise lets the last one win silently.  A YAML standalone file applies only when it ends
with APISIX's ``#END`` marker (``parse_standalone``): a file caught half-written has none, so
it is never half-applied.  JSON needs no marker (a cut JSON document does not parse), as in
APISIX.

Every document read here (and every Admin API body, ``shape_error``) is bounded in shape:
objects and arrays nested at most ``MAX_DEPTH`` deep, integers within +-``MAX_INT``, and a
YAML document whose aliases expand it far beyond its size is refused -- the code that walks
a configuration afterwards (validation, copies, the file writer) recurses per level.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import yaml

from ..errors import ConfigError

try:  # libyaml is bundled in PyYAML's wheels; fall back to the pure loader otherwise
    _BaseLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _BaseLoader = yaml.SafeLoader

#: APISIX's end-of-file marker of a YAML standalone file
END_MARK = "#END"
#: deepest nesting of objects/arrays accepted (APISIX's cjson allows 1000; a real
#: configuration is rarely 15 deep, and Pylon's Python code recurses once or more per level)
MAX_DEPTH = 100
#: largest integer magnitude accepted: what a double holds exactly (APISIX's Lua numbers are
#: doubles; beyond it a value cannot even be passed on as a 64-bit integer)
MAX_INT = 2**53 - 1
#: a YAML document may expand through aliases to this many values per byte of its text
_EXPANSION = 20
#: a YAML line indented (spaces, ``- ``, ``? ``, anchors, tags) further than this is refused:
#: libyaml recurses in C per level and crashes the process (SIGSEGV) near 100,000 levels
_MAX_INDENT = 512
_DEEP_LINE = re.compile(rb"^(?:[ \t?:-]|[&!][^\s?:-]*){%d,}" % _MAX_INDENT,
                        re.MULTILINE)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_TOO_DEEP = f"objects and arrays nested deeper than {MAX_DEPTH} levels"


class MissingEndMark(ConfigError):
    """A YAML standalone file without its trailing ``#END`` (possibly still being written)."""


class _StrictLoader(_BaseLoader):
    pass


def _mapping(loader: Any, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            seen = key in out
        except TypeError:                  # a sequence or mapping as a key ("? [a]")
            mark = key_node.start_mark
            raise ConfigError(f"a key must be a scalar, not a {type(key).__name__}",
                              f"line {mark.line + 1}") from None
        if seen:
            mark = key_node.start_mark
            raise ConfigError(f"duplicate key {key!r}", f"line {mark.line + 1}")
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def shape_error(value: Any, max_depth: int = MAX_DEPTH,
                max_values: int | None = None) -> str | None:
    """Why the decoded document ``value`` is refused, or None: objects/arrays nested deeper
    than ``max_depth``, an integer beyond +-MAX_INT, or more than ``max_values`` values in
    all (YAML aliases).  One iterative pass over the containers."""
    if not isinstance(value, (dict, list)):
        return _bad_int(value)
    stack: list[tuple[Any, int]] = [(value, 1)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
            for k in node:
                if type(k) is not str and (err := _bad_int(k)):
                    return err
        else:
            children = node
        if max_values is not None:
            seen += len(node)
            if seen > max_values:
                return "the document expands to too many values (YAML aliases?)"
        for v in children:
            if isinstance(v, (dict, list)):
                if depth >= max_depth:
                    return f"objects and arrays nested deeper than {max_depth} levels"
                stack.append((v, depth + 1))
            elif type(v) is int and not -MAX_INT <= v <= MAX_INT:
                return _bad_int(v)
    return None


def _bad_int(v: Any) -> str | None:
    if type(v) is int and not -MAX_INT <= v <= MAX_INT:
        text = str(v)
        if len(text) > 24:
            text = f"{text[:20]}... ({len(text)} digits)"
        return f"integer {text} out of range (at most {MAX_INT} in magnitude)"
    return None


def parse_text(text: str | bytes, name: str = "<config>") -> Any:
    """Parse YAML (or JSON when ``name`` ends in .json); raises ConfigError with a location.
    The result passes ``shape_error``."""
    doc = _parse(text, name)
    json = name.endswith(".json")
    err = shape_error(doc, max_values=None if json else _EXPANSION * len(text) + 1000)
    if err is not None:
        raise ConfigError(err, name)
    return doc


def _parse(text: str | bytes, name: str) -> Any:
    if name.endswith(".json"):
        try:
            return msgspec.json.decode(text)
        except msgspec.DecodeError as e:
            raise ConfigError(str(e), name) from None
        except RecursionError:
            raise ConfigError(_TOO_DEEP, name) from None
    err = _yaml_too_deep(text.encode() if isinstance(text, str) else text)
    if err is not None:
        raise ConfigError(err, name)
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except ConfigError as e:
        raise ConfigError(e.message, f"{name} {e.path}") from None
    except RecursionError:
        raise ConfigError(_TOO_DEEP, name) from None
    except yaml.reader.ReaderError as e:
        # bad bytes (NUL, invalid UTF-8): PyYAML only gives an offset; make it line/column
        before = text[:e.position]
        nl = b"\n" if isinstance(before, bytes) else "\n"
        line = before.count(nl) + 1   # type: ignore[arg-type]
        column = len(before) - before.rfind(nl)   # type: ignore[arg-type]
        char = e.character if isinstance(e.character, int) else ord(e.character)
        raise ConfigError(f"unacceptable character #x{char:04x}: {e.reason}",
                          f"{name} line {line} column {column}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{name} line {mark.line + 1} column {mark.column + 1}" if mark else name
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(str(problem), where) from None


def _yaml_too_deep(data: bytes) -> str | None:
    """Refuse, before libyaml sees it, YAML nested far too deep to parse safely: brackets
    nested deeper than MAX_DEPTH (each pass strips the innermost pairs; brackets inside
    strings count too -- a string rarely holds a hundred nested ones) or a line indented
    further than _MAX_INDENT.  Cheap: C-speed scans, at most MAX_DEPTH of them."""
    if _DEEP_LINE.search(data):
        return f"a line indented deeper than {_MAX_INDENT} columns"
    flow = data.translate(None, _NOT_BRACKETS)
    for _ in range(MAX_DEPTH):
        inner = flow.replace(b"[]", b"").replace(b"{}", b"")
        if len(inner) == len(flow):
            return None
        flow = inner
    if b"[]" in flow or b"{}" in flow:
        return _TOO_DEEP
    return None


def has_end_mark(data: bytes) -> bool:
    """Whether ``data`` ends with ``#END`` (trailing whitespace allowed), as APISIX checks
    the tail of its ``apisix.yaml``."""
    return data[-64:].rstrip().endswith(END_MARK.encode())


def parse_standalone(data: bytes, path: str) -> Any:
    """The standalone file's content: JSON for ``*.json``, otherwise YAML that must end with
    ``#END`` (raises MissingEndMark; an empty file is None, not refused here)."""
    if not path.endswith(".json") and not has_end_mark(data) and data.strip():
        raise MissingEndMark(f"missing valid end flag: a YAML standalone file is applied "
                             f"only when its last line is {END_MARK}", path)
    return parse_text(data, path)


def read_file(path: str) -> Any:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(e.strerror or str(e), path) from None
    return parse_text(data, path)
