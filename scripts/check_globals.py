"""No module-level mutable state shared across modules (issue 14: the Node, not globals).

    python3 scripts/check_globals.py [PACKAGE_DIR ...]     (default: pylon)

A module-level *variable* here is a name of a module's top level that is state, not a
fixed binding: it is rebound (assigned more than once at the top level, ``x += ...``, or
declared ``global`` in a function), or it is bound to a mutable container (a dict, list or
set display or comprehension, or a call of ``dict``/``list``/``set``/``defaultdict``/
``OrderedDict``/``deque``/``Counter``/``WeakValueDictionary``/``WeakKeyDictionary``/
``WeakSet``). A name bound once to anything else (``log = logging.getLogger(...)``,
``_new = object.__new__``) is a fixed binding. Names that are constants or types by
convention -- ALL_CAPS or starting with a capital letter (``_VARS``, ``Predicate``) -- and
dunders are left alone. Functions, classes and imports are never variables.

Flagged, in every module of the package(s):

* ``from X import name`` where ``name`` is a variable of the package module ``X``: the
  importer holds a copy of a binding the owner may rebind, or shares mutable state;
* ``X.name = ...`` / ``X.name += ...`` / ``del X.name`` where ``X`` is a package module
  bound by an import: writing another module's global;
* ``X.name`` read where ``name`` is a variable of module ``X``: reading another module's
  mutable global.

``X`` may be spelled through any import binding: ``from . import registry`` then
``registry.name``, or ``import pylon.proxy.registry`` then ``pylon.proxy.registry.name``.

Not caught: state reached through a function (``registry.current()``), through a mutable
constant (``_CACHE = {}`` mutated elsewhere: ALL_CAPS is trusted), through ``setattr`` /
``globals()`` / ``importlib``, or through an object held at module level by a class-named
binding. A deliberate use can be kept with ``# check_globals: ok (reason)`` on its line.
Exit status: 1 when something is flagged.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Container
from pathlib import Path

_CONSTANT_OR_TYPE = re.compile(r"_*[A-Z]")
_PRAGMA = "check_globals: ok"


def _is_variable_name(name: str) -> bool:
    if name.startswith("__") and name.endswith("__"):
        return False
    return not _CONSTANT_OR_TYPE.match(name)


def _targets(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, (ast.Tuple, ast.List)):
        return [n for elt in node.elts for n in _targets(elt)]
    if isinstance(node, ast.Starred):
        return _targets(node.value)
    return []


_MUTABLE_CALLS = {"dict", "list", "set", "defaultdict", "OrderedDict", "deque", "Counter",
                  "WeakValueDictionary", "WeakKeyDictionary", "WeakSet"}
_MUTABLE_NODES = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)


def _is_mutable(value: ast.expr | None) -> bool:
    if isinstance(value, _MUTABLE_NODES):
        return True
    if isinstance(value, ast.Call):
        f = value.func
        called = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) \
            else ""
        return called in _MUTABLE_CALLS
    return False


def module_variables(tree: ast.Module) -> set[str]:
    """Names that are variables of the module's top level (see the module docstring)."""
    names: set[str] = set()
    seen: set[str] = set()

    def bound(targets: list[str], value: ast.expr | None, rebinding: bool = False) -> None:
        for n in targets:
            if rebinding or n in seen or _is_mutable(value):
                names.add(n)
            seen.add(n)

    def top_level(stmts: list[ast.stmt]) -> None:
        for node in stmts:
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    bound(_targets(t), node.value)
            elif isinstance(node, ast.AugAssign):
                bound(_targets(node.target), None, rebinding=True)
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                bound(_targets(node.target), node.value)
            elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
                # still module level: both arms of an if, a try's handlers, ...
                for field in ("body", "orelse", "finalbody"):
                    top_level(getattr(node, field, []))
                for handler in getattr(node, "handlers", []):
                    top_level(handler.body)

    top_level(tree.body)
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            names.update(node.names)
    return {n for n in names if _is_variable_name(n)}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(importer: str, is_package: bool, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _dotted_module(
    expr: ast.expr, aliases: dict[str, str], modules: Container[str]
) -> str | None:
    """The package module ``expr`` names (``registry``, ``pylon.proxy.registry``), or None."""
    attrs: list[str] = []
    while isinstance(expr, ast.Attribute):
        attrs.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name) or expr.id not in aliases:
        return None
    dotted = ".".join([aliases[expr.id], *reversed(attrs)])
    return dotted if dotted in modules else None


def check(roots: list[Path]) -> list[str]:
    trees: dict[str, tuple[Path, ast.Module]] = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            trees[module_name(path, root)] = (path, ast.parse(path.read_text(), str(path)))
    variables = {name: module_variables(tree) for name, (_, tree) in trees.items()}
    problems: list[str] = []
    for name, (path, tree) in trees.items():
        lines = path.read_text().splitlines()
        is_package = path.name == "__init__.py"

        def flag(node: ast.AST, message: str, path: Path = path, lines: list[str] = lines) -> None:
            lineno = getattr(node, "lineno", 0)
            if lineno and _PRAGMA in lines[lineno - 1]:
                return
            problems.append(f"{path}:{lineno}: {message}")

        aliases: dict[str, str] = {}  # local name -> package module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in trees:
                        # "import a.b" binds "a"; "import a.b as c" binds c to a.b
                        if a.asname:
                            aliases[a.asname] = a.name
                        elif a.name.split(".")[0] in trees:
                            aliases[a.name.split(".")[0]] = a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(name, is_package, node.module, node.level)
                for a in node.names:
                    sub = f"{source}.{a.name}"
                    if sub in trees:
                        aliases[a.asname or a.name] = sub
                    elif source in trees and source != name and a.name in variables[source]:
                        flag(node, f"imports the module-level variable {a.name!r} of {source}")
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            owner = _dotted_module(node.value, aliases, trees)
            if owner is None or owner == name:
                continue
            if isinstance(node.ctx, (ast.Store, ast.Del)):
                flag(node, f"writes {owner}.{node.attr}: another module's global")
            elif node.attr in variables.get(owner, ()):
                flag(node, f"reads the module-level variable {owner}.{node.attr}")
    return problems


def _by_place(problem: str) -> tuple[str, int]:
    path, line, _ = problem.split(":", 2)
    return path, int(line)


def main(argv: list[str]) -> int:
    roots = [Path(a).resolve() for a in argv] or [Path("pylon").resolve()]
    problems = sorted(check(roots), key=_by_place)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} cross-module use(s) of module-level variables "
              "(see scripts/check_globals.py for what counts)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
