"""Read the standalone file (YAML or JSON) into plain data.

YAML is parsed with libyaml (``CSafeLoader``) and duplicate keys are refused, because PyYAML
otherwise lets the last one win silently.  APISIX's trailing ``#END`` marker is accepted.
"""

from __future__ import annotations

from typing import Any

import msgspec
import yaml

from ..errors import ConfigError

try:  # libyaml is bundled in PyYAML's wheels; fall back to the pure loader otherwise
    _BaseLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _BaseLoader = yaml.SafeLoader


class _StrictLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    pass


def _mapping(loader: Any, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in out:
            mark = key_node.start_mark
            raise ConfigError(f"duplicate key {key!r}", f"line {mark.line + 1}")
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def parse_text(text: str | bytes, name: str = "<config>") -> Any:
    """Parse YAML (or JSON when ``name`` ends in .json); raises ConfigError with a location."""
    if name.endswith(".json"):
        try:
            return msgspec.json.decode(text)
        except msgspec.DecodeError as e:
            raise ConfigError(str(e), name) from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except ConfigError as e:
        raise ConfigError(e.message, f"{name} {e.path}") from None
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


def read_file(path: str) -> Any:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(e.strerror or str(e), path) from None
    return parse_text(data, path)
