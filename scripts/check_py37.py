"""Check that what Nuke 13's Python (3.7) runs of copycat_nuke is Python 3.7 code: ``./dev test`` runs this.

:data:`FILES` is menu.py, init.py and every module Nuke's Python imports at start-up or on a button press when
training and rendering run in an external Python (``tests/test_nuke_external.py`` checks that the Nuke side
imports no other copycat_nuke module). Two checks, because neither alone is right:

- ``vermin --target 3.7-``: standard-library features (``Path.unlink(missing_ok=...)``, ``typing.get_origin``,
  the walrus...). Its defaults treat annotations as unevaluated, as ``from __future__ import annotations``
  (PEP 563, in every file here) makes them, so ``list[int]`` in a hint passes; but with that import it also
  misses ``dict[str, Any]`` evaluated at run time, and its ``union-types`` feature flags ``X | None`` hints;
- an AST pass for exactly those: builtin generics (``list[...]``) and ``X | None`` outside annotations.

Run: ``python scripts/check_py37.py`` (exit status 1 and one line per problem when something needs 3.8+).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: What Nuke's Python imports (relative to the repository); copycat_nuke/nuke/ is every file in it.
FILES = (
    "menu.py",
    "init.py",
    "copycat_nuke/__init__.py",
    "copycat_nuke/errors.py",
    "copycat_nuke/config.py",
    "copycat_nuke/framelist.py",
    "copycat_nuke/limits.py",
    "copycat_nuke/atomic.py",
    "copycat_nuke/rundir.py",
    "copycat_nuke/pretrained/__init__.py",
    "copycat_nuke/nuke",
    # Show Panel (where Qt, numpy, OpenImageIO and pyyaml are there for it, torch need not be)
    "copycat_nuke/plots.py",
    "copycat_nuke/drawing.py",
    "copycat_nuke/contact_sheets.py",
    "copycat_nuke/ui",
)
TARGET = "3.7"

#: Subscripted at run time, these need Python 3.9 (typing.List & co. are fine).
_GENERICS = frozenset({"list", "dict", "tuple", "set", "frozenset", "type"})
_ABC_MODULES = frozenset({"collections", "abc"})
#: Names that make ``a | b`` a union of types rather than arithmetic.
_TYPE_NAMES = frozenset({"int", "float", "str", "bytes", "bool", "list", "dict", "tuple", "set", "type", "Path"})


def python_files() -> list[Path]:
    found: list[Path] = []
    for name in FILES:
        path = REPO / name
        found.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return found


def _annotations(tree: ast.AST) -> set[int]:
    """ids of every node inside an annotation (not evaluated under PEP 563)."""
    inside: set[int] = set()
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args
            every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
            every += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
            roots += [a.annotation for a in every if a.annotation is not None]
            if node.returns is not None:
                roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    for root in roots:
        inside.update(id(child) for child in ast.walk(root))
    return inside


def _is_generic(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in _GENERICS
    # collections.abc.Sequence[...] / abc.Callable[...]
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, (ast.Name, ast.Attribute))
        and (
            (isinstance(node.value, ast.Name) and node.value.id in _ABC_MODULES)
            or (isinstance(node.value, ast.Attribute) and node.value.attr == "abc")
        )
    )


def _is_type(node: ast.expr) -> bool:
    return (isinstance(node, ast.Constant) and node.value is None) or (
        isinstance(node, ast.Name) and node.id in _TYPE_NAMES
    )


def runtime_generics(path: Path) -> list[str]:
    """``list[int]`` and ``int | None`` evaluated at run time in ``path``: Python 3.9 / 3.10."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    hints = _annotations(tree)
    # names imported from collections.abc (``from collections.abc import Sequence``) subscript like builtins
    abc_names = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "collections.abc"
        for alias in node.names
    }
    problems = []
    for node in ast.walk(tree):
        if id(node) in hints:
            continue
        where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Subscript):
            value = node.value
            if _is_generic(value) or (isinstance(value, ast.Name) and value.id in abc_names):
                problems.append(f"{where}: {ast.unparse(node)} at run time needs Python 3.9: use typing's")
        elif (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.BitOr)
            and (_is_type(node.left) or _is_type(node.right))
        ):
            problems.append(f"{where}: {ast.unparse(node)} at run time needs Python 3.10: use typing.Union")
    return problems


def main() -> int:
    files = python_files()
    vermin = subprocess.run(
        # vermin has no __main__ module: call its entry point
        [sys.executable, "-c", "import sys; from vermin.main import main; sys.exit(main())"]
        + [f"--target={TARGET}-", "--violations", "--no-tips", "--no-config-file"]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
    )
    problems = [problem for path in files for problem in runtime_generics(path)]
    if vermin.returncode != 0:
        print(vermin.stdout.strip() or vermin.stderr.strip())
    for problem in problems:
        print(problem)
    if vermin.returncode != 0 or problems:
        print(f"check_py37: what Nuke 13 runs must be Python {TARGET} code (see scripts/check_py37.py)")
        return 1
    print(f"check_py37: {len(files)} files are Python {TARGET} code")
    return 0


if __name__ == "__main__":
    sys.exit(main())
