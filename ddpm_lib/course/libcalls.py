"""Does a student's answer call the ddpm_lib code that implements its exercise? (static analysis, ``ast``)

The grader reads the student's notebook source itself (never asking the kernel). For exercise ``key``,
answered by the function the instructor notebook names (``name = check_key(name)``), it looks at every
top-level ``def name`` and ``name = ...`` of the student's notebook, and at the notebook's own functions
those call (transitively), for a use of

- one of the checker's ``library`` functions (:func:`ddpm_lib.course.exercises.exercise`) or its ``reference``,
  however it was imported (``import ddpm_lib.diffusion.forward as F; F.add_noise``, ``from ddpm_lib.diffusion.forward import
  add_noise as a``, a package-level re-export: names are resolved to the objects they denote);
- anything in ``ddpm_lib.course.exercises`` (the checkers and their references), or a ``.reference`` attribute.

Limits: only names written in the source are seen. ``getattr(module, "add_" + "noise")``, ``eval``,
``importlib.import_module`` with a computed string, or code copied out of ddpm_lib's source, are not
detected.
"""

from __future__ import annotations

import ast
import importlib
import re
from typing import Any

from ddpm_lib.course.exercises import CHECKERS


def _resolve(dotted: str) -> Any:
    """The object a ``ddpm_lib...`` dotted name denotes (importing ddpm_lib modules only), or None."""
    parts = dotted.split(".")
    if parts[0] != "ddpm_lib" or not all(p.isidentifier() for p in parts):
        return None
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def forbidden(key: str) -> list[tuple[str, Any]]:
    """(dotted name, object) of what exercise ``key``'s answer must not call."""
    checker = CHECKERS[key]
    ref = checker.reference
    out = [(d, _resolve(d)) for d in checker.library]
    out.append((f"{ref.__module__}.{ref.__qualname__}", ref))
    return [(d, o) for d, o in out if o is not None]


def python_of(source: str) -> str:
    """A code cell as plain Python: IPython magics (%...) and shell lines (!...) become ``pass``."""
    lines = []
    for line in source.splitlines():
        body = line.lstrip()
        lines.append(line[: len(line) - len(body)] + "pass" if body.startswith(("%", "!")) else line)
    return "\n".join(lines)


def _is_checker_call(value: ast.AST) -> bool:
    """``check_X(...)``: the checker cell's own line (the answer is what was bound before it)."""
    return isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id.startswith("check_")


class _Notebook:
    def __init__(self, cells: list[str]):
        self.aliases: dict[str, str] = {}
        self.star: list[str] = []
        self.defs: dict[str, list[ast.AST]] = {}
        for src in cells:
            try:
                tree = ast.parse(python_of(src))
            except SyntaxError:
                continue
            for node in tree.body:
                self._imports(node)
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    self.defs.setdefault(node.name, []).append(node)
                elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for t in targets:
                        if isinstance(t, ast.Name) and node.value is not None and not _is_checker_call(node.value):
                            self.defs.setdefault(t.id, []).append(node.value)

    def _imports(self, node: ast.AST) -> None:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Import):
                for a in sub.names:
                    if a.asname:
                        self.aliases[a.asname] = a.name
                    else:
                        top = a.name.split(".")[0]
                        self.aliases[top] = top
            elif isinstance(sub, ast.ImportFrom) and sub.module and not sub.level:
                for a in sub.names:
                    if a.name == "*":
                        self.star.append(sub.module)
                    else:
                        self.aliases[a.asname or a.name] = f"{sub.module}.{a.name}"

    def dotted(self, node: ast.AST) -> str | None:
        attrs = []
        while isinstance(node, ast.Attribute):
            attrs.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        base = self.aliases.get(node.id)
        if base is None:
            for module in self.star:
                if _resolve(f"{module}.{node.id}") is not None:
                    base = f"{module}.{node.id}"
                    break
        if base is None:
            return None
        return ".".join([base, *reversed(attrs)])


def library_use(cells: list[str], binding: str, key: str) -> str | None:
    """How the answer ``binding`` to exercise ``key`` uses the library (a short phrase), or None."""
    nb = _Notebook(cells)
    bad = forbidden(key)
    seen: set[str] = set()
    todo = [binding]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for root in nb.defs.get(name, []):
            for node in ast.walk(root):
                if isinstance(node, ast.Attribute) and node.attr == "reference":
                    return "uses `.reference` (the checker's own solution)" + ("" if name == binding else f" in {name}")
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    module = node.module if isinstance(node, ast.ImportFrom) else None
                    for a in node.names:
                        full = f"{module}.{a.name}" if module else a.name
                        if full.startswith("ddpm_lib.course.exercises") or (module or "").startswith("ddpm_lib.course.exercises"):
                            return f"imports {full} (the checkers)" + ("" if name == binding else f" in {name}")
                if isinstance(node, ast.Name) and node.id != name and node.id in nb.defs:
                    todo.append(node.id)
                if not isinstance(node, (ast.Name, ast.Attribute)):
                    continue
                dotted = nb.dotted(node)
                if not dotted or not dotted.startswith("ddpm_lib"):
                    continue
                if re.match(r"ddpm_lib\.exercises(\.|$)", dotted):
                    return f"uses {dotted} (the checkers)" + ("" if name == binding else f" in {name}")
                obj = _resolve(dotted)
                for label, target in bad:
                    if obj is not None and obj is target:
                        same = "" if label == dotted else f" (= {label})"
                        return f"calls {dotted}{same}" + ("" if name == binding else f" in {name}, which it calls")
    return None
