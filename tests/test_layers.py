"""ddpm_lib's import graph (read with ast by tools/import_graph.py): no cycle, no import up a layer, no
function-local import of a ddpm_lib module. Each check is also shown failing on a small broken graph."""

from __future__ import annotations

from tools import import_graph as ig

MODULES, IMPORTS = ig.scan()
EDGES = ig.internal_edges(IMPORTS, MODULES)


def test_the_scan_sees_every_kind_of_import():
    """The walker finds module-level, function-level, TYPE_CHECKING and relative imports (a synthetic module)."""
    text = (
        "from typing import TYPE_CHECKING\n"
        "import ddpm_lib.files\n"
        "from . import settings\n"
        "if TYPE_CHECKING:\n"
        "    from ddpm_lib.training.trainer import Trainer\n"
        "def f():\n"
        "    from ddpm_lib.loading import load_model\n"
    )
    modules = {"ddpm_lib.files", "ddpm_lib.settings", "ddpm_lib.training.trainer", "ddpm_lib.loading", "ddpm_lib.viz"}
    found = {(i.target, i.local, i.type_only) for i in ig.imports_of("ddpm_lib.viz", text, False, modules)}
    assert {("ddpm_lib.files", False, False), ("ddpm_lib.settings", False, False),
            ("ddpm_lib.training.trainer", False, True), ("ddpm_lib.loading", True, False)} <= found
    assert len(MODULES) > 40 and ("ddpm_lib.training.trainer", "ddpm_lib.training.callbacks") in EDGES


def test_no_import_cycle():
    assert ig.cycles(EDGES) == []


def test_the_cycle_check_finds_a_cycle():
    edges = {("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("e", "e")}
    assert ig.cycles(edges) == [["a", "b", "c"]]


def test_every_module_has_a_layer_and_no_import_runs_up_one():
    assert ig.upward(EDGES) == []


def test_the_layer_check_finds_an_upward_import_and_a_module_without_a_layer():
    edges = {("ddpm_lib.diffusion.forward", "ddpm_lib.models.unet"), ("ddpm_lib.models.unet", "ddpm_lib.diffusion.forward"),
             ("ddpm_lib.settings", "ddpm_lib.nowhere")}
    assert ig.upward(edges) == [("ddpm_lib.diffusion.forward", "ddpm_lib.models.unet"), ("ddpm_lib.nowhere", "<no layer>")]


def test_the_layers_are_in_the_issues_order():
    order = [ig.layer_of(m) for m in ("ddpm_lib.files", "ddpm_lib.diffusion.forward", "ddpm_lib.models.unet",
                                      "ddpm_lib.data.sources", "ddpm_lib.training.trainer", "ddpm_lib.loading",
                                      "ddpm_lib.evaluation.evaluate", "ddpm_lib.course.grade", "ddpm_lib.cli")]
    assert order == sorted(order) and len(set(order)) == len(order)


def test_no_function_local_import_of_a_ddpm_lib_module():
    local = [f"{i.source}:{i.line} imports {i.target}" for i in ig.local_statements(IMPORTS, own=True)]
    assert local == []


def test_the_local_import_check_finds_one():
    text = "import torch\ndef f():\n    import math\n    from ddpm_lib.files import sha256\n"
    imports = ig.imports_of("ddpm_lib.viz", text, False, {"ddpm_lib.files", "ddpm_lib.viz"})
    assert [(i.target, i.line) for i in ig.local_statements(imports, own=True)] == [("ddpm_lib.files", 4)]
    assert len(ig.local_statements(imports, own=False)) == 2


def test_function_local_imports_are_few_and_say_why():
    """Only optional or heavy dependencies are imported inside functions, each with its reason on the line."""
    local = ig.local_statements(IMPORTS, own=False)
    assert len(local) < 20, [f"{i.source}:{i.line} {i.target}" for i in local]
    root = ig.ROOT.parent
    unexplained = []
    for i in local:
        path = root.joinpath(*i.source.split(".")).with_suffix(".py")
        if not path.is_file():
            path = path.with_suffix("") / "__init__.py"
        line = path.read_text().splitlines()[i.line - 1]
        if "#" not in line:
            unexplained.append(f"{i.source}:{i.line} {line.strip()}")
    assert unexplained == []
