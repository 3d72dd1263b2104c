"""A locked-down Nuke for tests: run as a script, it is a Python where ``import torch`` (and pyyaml,
safetensors, tqdm) fails, and where the Nuke side may not import numpy or OpenImageIO either.

``python locked_down.py SCENARIO.json`` runs the scenario function named in the file with the stand-in ``nuke``
module and prints one JSON line: what the scenario saw, the imports the Nuke side was refused, and every
copycat_nuke module the Nuke side imported.

How the lock works, and why it is honest:

- site-packages leaves ``sys.path``; a finder serves only numpy and OpenImageIO from it, which the stand-in
  ``nuke`` needs to render Reads and Writes (Nuke's C++ does that in a real Nuke). torch and the rest are not
  found at all (``importlib.util.find_spec("torch")`` is None), as in a Nuke without them;
- every ``import`` statement and ``importlib.import_module`` call made by Nuke-side code (``init.py``,
  ``copycat_nuke.nuke.*`` and every copycat_nuke module they import, transitively) is checked: numpy,
  OpenImageIO, torch, pyyaml, safetensors and tqdm are refused (recorded, and raised as a missing module), and
  a copycat_nuke module that the stand-in loaded earlier with numpy in it is refused too (a cached module
  bypasses the finders, but not ``__import__``).
"""

from __future__ import annotations

import builtins
import importlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
import types
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
#: What the stand-in nuke module may import from site-packages.
SERVED = frozenset({"numpy", "OpenImageIO"})
#: What the Nuke side may not import.
FORBIDDEN = frozenset({"torch", "numpy", "OpenImageIO", "yaml", "safetensors", "tqdm"})

refused: list[str] = []
nuke_side: set[str] = set()


class _Serve(importlib.abc.MetaPathFinder):
    """Finds only :data:`SERVED` top-level packages in site-packages (which is off ``sys.path``)."""

    def __init__(self, directories: list[str]) -> None:
        self.directories = directories

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Optional[importlib.machinery.ModuleSpec]:
        if path is None and name in SERVED:
            return importlib.machinery.PathFinder.find_spec(name, self.directories)
        return None


def _is_nuke_side(module: str) -> bool:
    return module in nuke_side or module == "copycat_nuke.nuke" or module.startswith("copycat_nuke.nuke.")


def _heavy(module: types.ModuleType) -> Optional[str]:
    """A forbidden package a loaded module holds (``np``, ``oiio``...), or None."""
    for value in vars(module).values():
        origin = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        if isinstance(origin, str) and origin.split(".")[0] in FORBIDDEN:
            return origin
    return None


def _check(importer: str, target: str, fromlist: Any) -> None:
    top = target.split(".")[0]
    if top in FORBIDDEN:
        refused.append(f"{importer} imports {target}")
        raise ModuleNotFoundError(f"No module named {target!r} (locked-down Nuke)", name=target)
    if top != "copycat_nuke":
        return
    names = [target] + [f"{target}.{item}" for item in (fromlist or ()) if isinstance(item, str)]
    for name in names:
        module = sys.modules.get(name)
        if name != target and module is None:  # a plain name in the fromlist, not a submodule
            continue
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # a package's __init__ runs too
            nuke_side.add(".".join(parts[:depth]))
        heavy = _heavy(module) if module is not None else None
        if heavy is not None:
            refused.append(f"{importer} imports {name}, which holds {heavy}")
            raise ModuleNotFoundError(f"{name} needs {heavy} (locked-down Nuke)", name=heavy)


_real_import = builtins.__import__
_real_import_module = importlib.import_module


def _guarded_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
    importer = (globals or {}).get("__name__", "")
    if level == 0 and _is_nuke_side(importer):
        _check(importer, name, fromlist)
    return _real_import(name, globals, locals, fromlist, level)


def _guarded_import_module(name: str, package: Optional[str] = None) -> Any:
    importer = sys._getframe(1).f_globals.get("__name__", "")
    if _is_nuke_side(importer) and not name.startswith("."):
        _check(importer, name, ())
    return _real_import_module(name, package)


def lock() -> None:
    site = [p for p in sys.path if p.endswith("site-packages")]
    sys.path[:] = [str(REPO), str(HERE)] + [p for p in sys.path if p and p not in site]
    sys.meta_path.insert(0, _Serve(site))
    for name in [n for n in sys.modules if n.split(".")[0] in FORBIDDEN | {"copycat_nuke"}]:
        del sys.modules[name]
    builtins.__import__ = _guarded_import
    importlib.import_module = _guarded_import_module
    nuke_side.add("__main__")  # init.py and menu.py run as scripts (runpy)


def main() -> int:
    scenario = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    lock()
    import runpy

    import nuke

    nuke.reset(gui=False)
    # Nuke runs init.py in its __main__, where the gizmos' [python ...] checks are evaluated too
    nuke.STATE.main_namespace.update(runpy.run_path(str(REPO / "init.py"), run_name="__main__"))
    import external_scenarios as scenarios  # the test's scenario functions, beside this file

    function: Callable[..., dict[str, Any]] = getattr(scenarios, scenario["function"])
    outcome = function(nuke, **scenario.get("arguments", {}))
    outcome["refused"] = refused
    outcome["nuke_side"] = sorted(n for n in nuke_side if n.startswith("copycat_nuke"))
    outcome["torch_found"] = importlib.util.find_spec("torch") is not None
    print("RESULT " + json.dumps(outcome, default=str))
    sys.stdout.flush()
    os._exit(0)  # worker threads of the stand-in (none should be left) must not hold the test up


if __name__ == "__main__":
    sys.exit(main())
