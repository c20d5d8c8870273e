"""The floor plan holds: layers point one way, no import circle, lazy imports say why, the
tracking wing loads no torch, and every `from nnlab... import` in the tree resolves."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Lower layers first; a module may import its own layer or a lower one, never a higher one.
# A wing is a top-level module or package of nnlab: a package's modules are in its layer
# (nnlab.report.stats is a command's, nnlab.figures.canvas a part's).
LAYERS = ["parts", "config", "tracking", "engine", "jobs", "packed", "plugins", "commands"]
PARTS = {"errors", "quiet", "figures", "away", "drawing", "memory", "activations", "inits",
         "losses", "models", "data"}
COMMANDS = {"__main__", "report", "report_page", "findings", "server", "plot", "api"}
MAX_LINES = 500  # a module longer than this is split into a package of concerns


def layer_of(module: str) -> str:
    """The layer of a dotted module name inside nnlab or hydra_plugins."""
    parts = module.split(".")
    if parts[0] == "hydra_plugins":
        return "plugins"
    if len(parts) == 1:  # the package nnlab itself: the Python API a user types
        return "commands"
    wing = parts[1]
    if wing in PARTS:
        return "parts"
    if wing in COMMANDS:
        return "commands"
    assert wing in LAYERS, f"{module}: not in any layer; add its wing to LAYERS or PARTS"
    return wing


def source_modules() -> Iterator[tuple[str, Path]]:
    for folder in ("nnlab", "hydra_plugins/nnlab_packed", "hydra_plugins/nnlab_submitit"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            yield dotted.removesuffix(".__init__"), path


def is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a name inside a module, not a submodule
        return False


def nnlab_imports(path: Path) -> Iterator[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every nnlab/hydra_plugins import."""
    tree = ast.parse(path.read_text())
    nested = {id(sub) for node in ast.walk(tree)
              if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
              for sub in ast.walk(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in ("nnlab", "hydra_plugins"):
                continue
            names = [f"{node.module}.{a.name}" if is_module(f"{node.module}.{a.name}")
                     else node.module for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in ("nnlab", "hydra_plugins") and \
                    not name.startswith("hydra_plugins.hydra_"):
                yield name, node.lineno, id(node) in nested


def resolve(name: str) -> str:
    """The module a dotted import name refers to (a name inside a module -> the module)."""
    while name and not is_module(name):
        name = name.rpartition(".")[0]
    return name


def test_no_module_imports_a_higher_layer() -> None:
    wrong = []
    for module, path in source_modules():
        own = LAYERS.index(layer_of(module))
        for name, line, _ in nnlab_imports(path):
            target = resolve(name)
            if target == "nnlab":  # the package root, for its __version__: it loads nothing
                continue
            if LAYERS.index(layer_of(target)) > own:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {layer_of(module)} imports "
                             f"{target} ({layer_of(target)})")
    assert not wrong, "\n".join(wrong)


def test_no_import_circle() -> None:
    """Module-level imports between nnlab's modules form no cycle (a package's __init__ counts
    as importing what it re-exports)."""
    graph = {module: {resolve(name) for name, _, lazy in nnlab_imports(path) if not lazy}
             for module, path in source_modules()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if target == module or target not in graph:
                continue
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_every_lazy_nnlab_import_says_why() -> None:
    """An nnlab import inside a function carries a comment with 'lazy' (on its line, or above
    its block of imports) saying what the start-up saves."""
    silent = []
    for _, path in source_modules():
        lines = path.read_text().splitlines()
        for name, line, lazy in nnlab_imports(path):
            first = line - 1
            while first > 0 and lines[first - 1].strip().startswith(("from ", "import ", "#")):
                first -= 1
            if lazy and "lazy" not in " ".join(lines[first:line]):
                silent.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert not silent, "lazy imports without a reason:\n" + "\n".join(sorted(set(silent)))


def test_the_tracking_wing_loads_no_torch_or_lightning() -> None:
    code = ("import sys, nnlab.tracking, nnlab.tracking.life, nnlab.config; "
            "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_every_nnlab_import_in_the_tree_resolves() -> None:
    """bench/, tests/, examples/ and the package import only names that exist."""
    missing = []
    for folder in ("bench", "tests", "examples", "nnlab", "hydra_plugins"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                        and node.module.split(".")[0] == "nnlab"):
                    continue
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name) and \
                            not is_module(f"{node.module}.{alias.name}"):
                        missing.append(f"{path.relative_to(ROOT)}:{node.lineno}: "
                                       f"{node.module}.{alias.name}")
    assert not missing, "\n".join(missing)


def test_no_two_modules_differ_by_one_letter() -> None:
    """Twin names (plot/plots, train/trained) hide which is which."""
    import difflib

    names = sorted({p.stem for p in (ROOT / "nnlab").rglob("*.py")} - {"__init__", "__main__"})
    twins = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]
             if abs(len(a) - len(b)) <= 1 and sum(
                 size for *_, size in difflib.SequenceMatcher(None, a, b).get_matching_blocks()
             ) >= max(len(a), len(b)) - 1]
    assert not twins, twins


def test_no_module_is_longer_than_the_limit() -> None:
    """Short modules, one concern each: a longer one becomes a package (as report, findings and
    figures did)."""
    long = [f"{path.relative_to(ROOT)}: {count} lines" for _, path in source_modules()
            if (count := len(path.read_text().splitlines())) > MAX_LINES]
    assert not long, "\n".join(long)
