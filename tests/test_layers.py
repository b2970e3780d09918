"""The house's floors: which of camwire's packages may import which, and no import circle.

common/ is the ground floor (the wire, config, sockets, the skeleton); the daemons' packages stand
on it side by side and never import each other; the console (web/) reads what the recorder and
the sink offer for reading; camwire/ (the CLI, camwire run) is the roof and may use everything.
An arrow back down, or between neighbours, is a hidden dependency a newcomer cannot see from the
folder names. KNOWN lists any still to go (none: the typed settings model, common.settings, ended
the daemons' use of camwire.cli); one that is gone must leave KNOWN too, so the list stays true.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOORS = ("common", "extractor", "classifier", "sink", "recorder", "web")  # folders installed as camwire.NAME
PACKAGES = (*FLOORS, "camwire")  # camwire/ itself: the CLI and camwire run
MAY_IMPORT = {
    "common": {"common"},
    "extractor": {"common", "extractor"},
    "classifier": {"common", "classifier"},
    "sink": {"common", "sink"},
    "recorder": {"common", "recorder"},
    "web": {"common", "web", "recorder", "sink"},  # the recorder's read API, the sink's status readers
    "camwire": set(PACKAGES),
}
KNOWN: set[tuple[str, str]] = set()  # none left


def package_of(module: str) -> str:
    """``camwire.sink.daemon`` -> ``sink``; ``camwire.cli`` -> ``camwire``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FLOORS else parts[0]


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT / package).with_suffix("").parts
            parts = ("camwire",) + (() if package == "camwire" else (package,)) + parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """Every camwire module ``path`` imports (in functions too, unless ``top_level_only``)."""
    tree = ast.parse(path.read_text())
    nodes: list[ast.AST] = []
    todo: list[ast.AST] = [tree]
    while todo:  # walk, not entering function bodies when only what runs at import counts
        node = todo.pop()
        nodes.append(node)
        for child in ast.iter_child_nodes(node):
            if top_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            todo.append(child)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)  # from package import module
    return {n for n in names if n.split(".")[0] == "camwire"}


def test_no_package_imports_one_above_or_beside_it() -> None:
    modules = _modules()
    wrong = set()
    for module, path in modules.items():
        for name in _imports(path, top_level_only=False):
            if package_of(name) not in MAY_IMPORT[package_of(module)] and name in modules:
                wrong.add((module, name))
    assert wrong - KNOWN == set(), "imports against the floors (see this module's docstring)"
    assert KNOWN - wrong == set(), "gone: take these out of KNOWN"


def test_no_import_circle() -> None:
    """Between modules, as they import at load time (TYPE_CHECKING blocks count: a reader sees them)."""
    modules = _modules()
    graph = {m: {n for n in _imports(p, top_level_only=True) if n in modules and n != m} for m, p in modules.items()}
    # a package's __init__ importing its own modules is how a package is made, not a circle
    graph = {m: {n for n in deps if not n.startswith(m + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_every_package_is_installed_under_camwire() -> None:
    """pyproject.toml lists each folder with an __init__.py as camwire.NAME (package-dir mapping):
    a package left out would import from a checkout and be missing from a wheel."""
    import tomllib
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {m for m, p in _modules().items() if p.name == "__init__.py"}
    assert set(setuptools["packages"]) == found
    assert setuptools["package-dir"] == {"camwire": "camwire", **{f"camwire.{f}": f for f in FLOORS}}


def test_importing_common_loads_no_daemon() -> None:
    """At run time too: all of camwire.common imported, no module of a floor above it is loaded."""
    import subprocess
    import sys
    code = ("import importlib, pkgutil, sys, camwire.common as c\n"
            "for m in pkgutil.walk_packages(c.__path__, 'camwire.common.'): importlib.import_module(m.name)\n"
            "print(sorted(n for n in sys.modules if n.startswith('camwire.') and not n.startswith('camwire.common')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]"
