"""The package's layers: no import cycles between asrkit's modules, and the low modules stay low.

The graph is read from the source (no module is imported): an edge is an ``import asrkit...`` or
``from asrkit... import`` that runs when the module is imported, so imports inside functions (deferred on
purpose, e.g. of TensorFlow backends) and under ``if TYPE_CHECKING:`` are left out. Importing
``asrkit.a.b`` also runs ``asrkit/a/__init__.py``, so it counts as an edge to ``asrkit.a`` too, unless the
importer lives inside ``asrkit.a`` already.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "asrkit"
# Modules that the model registry, the backends and TensorFlow must stay out of: the values and contracts,
# and what formats, scores and streams transcripts.
LOW_MODULES = (
    "asrkit.contracts",
    "asrkit.formats",
    "asrkit.metrics",
    "asrkit.streaming",
    "asrkit.stream_worker",
    "asrkit.stream_metrics",
    "asrkit.vad",
    "asrkit.decoding",
    "asrkit.evaluate",
)
# A few of them imported for real, each in a fresh interpreter, to catch what the static graph cannot see
# (an import hidden in a third-party package, a name looked up through importlib).
IMPORTED_FOR_REAL = ("asrkit.contracts", "asrkit.formats", "asrkit.metrics", "asrkit.streaming")


def package_modules(package: Path) -> dict[str, Path]:
    """Every module of the package folder ``package``, by dotted name."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = package_modules(PACKAGE)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_time_statements(body: list[ast.stmt], *, typing: bool = False) -> Iterator[ast.stmt]:
    """The statements of ``body`` that run when the module is imported (class bodies do; functions do not),
    and with ``typing`` those under ``if TYPE_CHECKING:`` too."""
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(stmt, ast.If):
            if typing or not _is_type_checking(stmt.test):
                yield from import_time_statements(stmt.body, typing=typing)
            yield from import_time_statements(stmt.orelse, typing=typing)
        elif isinstance(stmt, ast.Try):
            for block in (stmt.body, *(h.body for h in stmt.handlers), stmt.orelse, stmt.finalbody):
                yield from import_time_statements(block, typing=typing)
        elif isinstance(stmt, (ast.With, ast.ClassDef)):
            yield from import_time_statements(stmt.body, typing=typing)
        else:
            yield stmt


def _ancestors(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def imports_of(name: str, modules: dict[str, Path] = MODULES, *, typing: bool = False) -> set[str]:
    """The asrkit modules (of ``modules``) that importing module ``name`` imports directly; with ``typing``,
    also those it imports only for type checkers."""
    package = name if modules[name].name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    tree = ast.parse(modules[name].read_text(encoding="utf-8"))
    for stmt in import_time_statements(tree.body, typing=typing):
        if isinstance(stmt, ast.Import):
            found.update(alias.name for alias in stmt.names)
        elif isinstance(stmt, ast.ImportFrom):
            base = stmt.module or ""
            if stmt.level:
                anchor = package.split(".")[: len(package.split(".")) - stmt.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            # "from asrkit.models import ctc" imports the submodule asrkit.models.ctc
            found.update(f"{base}.{alias.name}" for alias in stmt.names if f"{base}.{alias.name}" in modules)
    edges = set()
    for target in (t for t in found if t.split(".")[0] == "asrkit"):
        edges |= {target} | (_ancestors(target) - _ancestors(name))
    return {t for t in edges if t in modules and t != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return {name: imports_of(name) for name in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path that returns to its start, or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for nxt in sorted(graph[node]):
            if nxt in on_path:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in done:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module that importing ``start`` imports, each mapped to the module that imports it."""
    via: dict[str, str] = {}
    todo = [start]
    while todo:
        node = todo.pop()
        for nxt in graph[node]:
            if nxt not in via and nxt != start:
                via[nxt] = node
                todo.append(nxt)
    return via


def test_find_cycle_reports_the_cycle_as_a_path() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_holds_what_runs_at_import_time(tmp_path: Path) -> None:
    sources = {
        "__init__.py": "",
        "contracts.py": "",
        "cli.py": "",
        "formats.py": "from asrkit.models.base import Span\n",
        "models/__init__.py": "from asrkit.contracts import Span\n",
        "models/base.py": "import asrkit.contracts\n",
        "models/ctc.py": (
            "from typing import TYPE_CHECKING\nfrom . import base\nfrom ..contracts import Span\n"
            "if TYPE_CHECKING:\n    from asrkit.formats import render\n"
            "def load():\n    import asrkit.cli\n"
            "class Model:\n    from asrkit import cli\n"
        ),
    }
    for name, text in sources.items():
        (tmp_path / "asrkit" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "asrkit" / name).write_text(text, encoding="utf-8")
    modules = package_modules(tmp_path / "asrkit")
    graph = {name: imports_of(name, modules) for name in modules}
    # relative imports resolved; a class body runs at import, a function body and TYPE_CHECKING do not
    assert graph["asrkit.models.ctc"] == {
        "asrkit",
        "asrkit.models",
        "asrkit.models.base",
        "asrkit.contracts",
        "asrkit.cli",
    }
    assert imports_of("asrkit.models.ctc", modules, typing=True) == graph["asrkit.models.ctc"] | {"asrkit.formats"}
    # importing asrkit.models.base runs asrkit/models/__init__.py first
    assert graph["asrkit.formats"] == {"asrkit.models", "asrkit.models.base"}
    assert find_cycle(graph) is None
    (tmp_path / "asrkit" / "contracts.py").write_text("from asrkit.formats import render\n", encoding="utf-8")
    graph["asrkit.contracts"] = imports_of("asrkit.contracts", modules)
    assert find_cycle(graph) == ["asrkit.contracts", "asrkit.formats", "asrkit.models", "asrkit.contracts"]


def test_no_import_cycle(graph: dict[str, set[str]]) -> None:
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


@pytest.mark.parametrize("low", LOW_MODULES)
def test_low_modules_do_not_import_the_models(graph: dict[str, set[str]], low: str) -> None:
    via = reachable(graph, low)
    models = sorted(m for m in via if m == "asrkit.models" or m.startswith("asrkit.models."))
    chain = [models[0]] if models else []
    while chain and chain[-1] in via:
        chain.append(via[chain[-1]])
    assert not models, f"{low} imports the model package: " + " <- ".join(chain)


def test_contracts_import_only_errors() -> None:
    # type-checking imports count here: the contracts once named the stream type of asrkit.streaming,
    # which imported them back
    assert imports_of("asrkit.contracts", typing=True) <= {"asrkit", "asrkit.errors"}


@pytest.mark.parametrize("module", IMPORTED_FOR_REAL)
def test_importing_a_low_module_leaves_the_models_unloaded(module: str) -> None:
    code = (
        "import sys, importlib; importlib.import_module(sys.argv[1]); "
        "print(' '.join(m for m in sys.modules if m == 'asrkit.models' or m.startswith('asrkit.models.') "
        "or m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, module], capture_output=True, text=True, timeout=120, cwd=PACKAGE.parent
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [], f"importing {module} loaded {run.stdout.strip()}"
