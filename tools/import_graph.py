"""ddpm_lib's import graph, read with ``ast`` (nothing is imported or run): cycles, imports that run up
a layer, and imports made inside functions.

    python tools/import_graph.py            # the figures, and each offending arrow
    python tools/import_graph.py --edges    # every arrow between ddpm_lib modules

Every ``import`` statement counts: module level, inside functions, and under ``if TYPE_CHECKING:``.
``tests/test_layers.py`` runs the same checks (the layer order lives in :data:`LAYERS`, once).
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "ddpm_lib"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

# The layers, lowest first: a module may import its own layer and the ones before it, never a later
# one. A name is a module or a package prefix (``ddpm_lib.diffusion`` covers every module in it); the
# longest matching prefix decides. The utilities sit at the bottom: they import nothing above them.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # utilities: the package's __init__ (the version handshake), the environment, file writes, progress
    # bars, image grids, command-line plumbing, and the starter-weight files with their registries
    ("utilities", ("ddpm_lib", "ddpm_lib.settings", "ddpm_lib.files", "ddpm_lib.progress", "ddpm_lib.viz",
                   "ddpm_lib.command_line", "ddpm_lib.pretrained")),
    ("diffusion", ("ddpm_lib.diffusion",)),
    ("models", ("ddpm_lib.models",)),
    ("data", ("ddpm_lib.data",)),
    ("training", ("ddpm_lib.training",)),
    # rebuilding a model needs TrainConfig (training); evaluation and the course load models through it
    ("loading", ("ddpm_lib.loading",)),
    ("evaluation", ("ddpm_lib.evaluation",)),
    ("course", ("ddpm_lib.course",)),
    ("cli", ("ddpm_lib.cli", "ddpm_lib.__main__")),
]


@dataclass(frozen=True)
class Import:
    """One ``import`` statement's target, as seen from ``source``."""

    source: str  # the importing module, e.g. "ddpm_lib.training.trainer"
    target: str  # the imported module, e.g. "ddpm_lib.files" or "torch"
    line: int
    local: bool  # inside a function (or method)
    type_only: bool  # under ``if TYPE_CHECKING:``


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(source: str, text: str, is_package: bool, modules: set[str]) -> list[Import]:
    """Every import in ``text`` (the code of module ``source``), resolved to module names. ``from
    ddpm_lib.x import y`` counts as an import of ``ddpm_lib.x.y`` when that is a module in ``modules``."""
    out: list[Import] = []
    package = source if is_package else source.rpartition(".")[0]

    def visit(node: ast.AST, local: bool, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, True, type_only)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), local, True)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), local, type_only)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    out.append(Import(source, alias.name, child.lineno, local, type_only))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                for alias in child.names:
                    sub = f"{mod}.{alias.name}"
                    out.append(Import(source, sub if sub in modules else mod, child.lineno, local, type_only))
            else:
                visit(child, local, type_only)

    visit(ast.parse(text), False, False)
    return out


def scan(root: Path = ROOT) -> tuple[set[str], list[Import]]:
    """The package's module names and every import statement in it."""
    files = sorted(root.rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    found: list[Import] = []
    for f in files:
        found += imports_of(module_name(f, root), f.read_text(), f.name == "__init__.py", modules)
    return modules, found


def internal_edges(imports: list[Import], modules: set[str]) -> set[tuple[str, str]]:
    """Arrows between two different package modules (``a imports b``), every kind of import included.
    An import of a package's own parent package (``from . import x`` resolving to the package) is
    left out when it names a submodule: that case resolves to the submodule itself."""
    return {(i.source, i.target) for i in imports if i.target in modules and i.target != i.source}


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted; a module
    that imports itself does not count."""
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(1000, 10 * len(graph)))
    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return sorted(out)


def layer_of(module: str, layers=LAYERS) -> int | None:
    """The index of ``module``'s layer (longest matching prefix), ``None`` when no layer names it."""
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(layers):
        for p in prefixes:
            within = module.startswith(p + ".") and p != PACKAGE  # the package itself: only its __init__
            if (module == p or within) and len(p) > best_len:
                best, best_len = i, len(p)
    return best


def upward(edges: set[tuple[str, str]], layers=LAYERS) -> list[tuple[str, str]]:
    """Arrows whose target sits in a later layer than their source (and modules no layer names, as
    ``(module, "<no layer>")``)."""
    out = []
    for a, b in sorted(edges):
        la, lb = layer_of(a, layers), layer_of(b, layers)
        if la is None or lb is None:
            out.append((a if la is None else b, "<no layer>"))
        elif lb > la:
            out.append((a, b))
    return sorted(set(out))


def local_statements(imports: list[Import], own: bool) -> list[Import]:
    """The import statements inside functions, one per statement (``from a import b, c`` is one);
    with ``own``, only those of ddpm_lib modules."""
    seen: dict[tuple[str, int], Import] = {}
    for i in imports:
        if i.local and (not own or i.target.split(".")[0] == PACKAGE):
            seen.setdefault((i.source, i.line), i)
    return list(seen.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="list every arrow between package modules")
    parser.add_argument("--root", type=Path, default=ROOT, help="the package folder (default: ddpm_lib)")
    args = parser.parse_args(argv)
    modules, imports = scan(args.root)
    edges = internal_edges(imports, modules)
    comps = cycles(edges)
    up = upward(edges)
    local_own = local_statements(imports, own=True)
    local_all = local_statements(imports, own=False)
    print(f"{len(modules)} modules, {len(edges)} arrows between them "
          f"({sum(1 for i in imports if i.type_only and i.target in modules)} type-only imports)")
    print(f"cycles (strongly connected groups): {len(comps)}, "
          f"{sum(len(c) for c in comps)} modules in them, the largest {max(map(len, comps), default=0)}")
    for c in comps:
        print("  cycle: " + " <-> ".join(c))
    print(f"upward arrows (against LAYERS): {len(up)}")
    for a, b in up:
        print(f"  {a} -> {b}")
    print(f"function-local imports: {len(local_all)} in all, {len(local_own)} of ddpm_lib modules")
    for i in local_own:
        print(f"  {i.source}:{i.line} imports {i.target}")
    if args.edges:
        for a, b in sorted(edges):
            print(f"{a} -> {b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
