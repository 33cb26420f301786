"""Rewrite references to ddpm_lib's old flat module paths into the layered ones (issue 20), in place.

    python -m tools.rename_imports FILE...                  # .py/.md/Makefile/...; notebooks: code cells only
    python -m tools.rename_imports --markdown NB.ipynb...   # notebooks: markdown cells too

It rewrites ``ddpm_lib.OLD`` to ``ddpm_lib.NEW`` (:data:`MODULES`), ``ddpm_lib/OLD.py`` paths, ``from
ddpm_lib import OLD``, and ``from MODULE import NAME`` for the names that moved out of runs.py, checkpoint.py
and pretrained (:data:`NAMES`). Format tags stored in files (``"ddpm_lib.checkpoint/1"``) are left alone.
``load_model_from_checkpoint`` becomes ``ddpm_lib.loading.load_model``, which returns a fourth value (the
step): ``a, b, c = load_model_from_checkpoint(`` gets ``, _``. ``pretrained.load(NAME)`` is gone: use
``load_model("pretrained:NAME")``. Attribute uses of a module object (``runs.atomic_write`` after ``from ddpm_lib.training import runs``)
are not rewritten: the tests and ruff find them.
"""

from __future__ import annotations

import json
import re
import sys

#: old flat module (below ddpm_lib) -> its new home
MODULES = {
    "schedules": "diffusion.schedules", "forward": "diffusion.forward", "losses": "diffusion.losses",
    "samplers": "diffusion.samplers", "toy": "diffusion.toy", "empirical": "diffusion.empirical",
    "bound": "diffusion.bound",  # issue 19's variational-bound module: git mv it to diffusion/ when merging
    "embeddings": "models.embeddings", "blocks": "models.blocks", "unet": "models.unet", "ema": "models.ema",
    "diffusers_compat": "models.diffusers_compat",
    "data": "data.sources", "image_datasets": "data.image_datasets", "standins": "data.standins",
    "batching": "data.batching",
    "train_config": "training.config", "recipes": "training.recipes", "trainer": "training.trainer",
    "callbacks": "training.callbacks", "monitor": "training.monitor", "distributed": "training.distributed",
    "runs": "training.runs", "checkpoint": "training.checkpoint",
    "metrics": "evaluation.metrics", "features": "evaluation.features", "classifier": "evaluation.classifier",
    "evaluate": "evaluation.evaluate",
    "exercises": "course.exercises", "grade": "course.grade", "student": "course.student",
    "model_choice": "course.model_choice",
}

_FILES = ("NoSpaceError", "atomic_write", "remove_stale_temp_files", "_write_all", "_fsync_dir")
_CHECKPOINT = (
    "FORMAT", "READABLE_FORMATS", "RESUME_MAY_CHANGE", "RESUME_KEYS", "SLIM_KEYS", "CheckpointMismatchError",
    "RunError", "save_checkpoint", "load_checkpoint", "get_rng_state", "set_rng_state", "model_config_dict",
    "training_payload", "restore_training_state", "resume_conflicts", "config_differences",
    "check_config_matches", "check_finite", "load_model_weights", "export_slim", "sha256_of_weights",
    "_check_training_format",
)
#: (new module, name) -> the module that owns the name now (runs.py and the checkpoint.py shim were split)
NAMES: dict[tuple[str, str], str] = {
    **{(m, n): "ddpm_lib.files" for m in ("ddpm_lib.training.runs", "ddpm_lib.training.checkpoint") for n in _FILES},
    **{("ddpm_lib.training.runs", n): "ddpm_lib.training.checkpoint" for n in _CHECKPOINT},
    ("ddpm_lib.pretrained", "sha256"): "ddpm_lib.files",
}
#: renamed names: (module, old name) -> new name
RENAMED = {
    ("ddpm_lib.training.runs", "_resolve"): ("ddpm_lib.training.checkpoint", "read_payload"),
    ("ddpm_lib.training.runs", "load_model_from_checkpoint"): ("ddpm_lib.loading", "load_model"),
    ("ddpm_lib.training.checkpoint", "load_model_from_checkpoint"): ("ddpm_lib.loading", "load_model"),
}

_ALT = "|".join(sorted(MODULES, key=len, reverse=True))
# ``data`` is both an old module and a new package: its new modules are not rewritten again (idempotence)
_NEW_DATA = "|".join(v.split(".")[1] for v in MODULES.values() if v.startswith("data."))


def _from_package(m: re.Match) -> str:
    """``from ddpm_lib import a, b as c`` -> one import line per new package (a moved module keeps its old
    name via ``as`` so the code below it needs no change)."""
    indent, items = m.group(1), [x.strip() for x in m.group(2).split(",")]
    groups: dict[str, list[str]] = {}
    for item in items:
        name, _, alias = (p.strip() for p in item.partition(" as "))
        if name in MODULES:
            package, _, leaf = MODULES[name].rpartition(".")
            groups.setdefault(f"ddpm_lib.{package}", []).append(
                leaf if (alias or name) == leaf else f"{leaf} as {alias or name}")
        else:
            groups.setdefault("ddpm_lib", []).append(item)
    return "\n".join(f"{indent}from {k} import {', '.join(v)}" for k, v in groups.items())


def _from_module(m: re.Match) -> str:
    """``from M import a, b`` where some names moved to other modules -> one line per owning module."""
    indent, module, items, tail = m.group(1), m.group(2), m.group(3), m.group(4) or ""
    groups: dict[str, list[str]] = {}
    for item in (x.strip() for x in items.split(",") if x.strip()):
        name, _, alias = (p.strip() for p in item.partition(" as "))
        if (module, name) in RENAMED:
            home, new = RENAMED[(module, name)]
            groups.setdefault(home, []).append(f"{new} as {alias}" if alias else new)
        else:
            groups.setdefault(NAMES.get((module, name), module), []).append(item)
    if list(groups) == [module]:
        return m.group(0)
    lines = [f"{indent}from {k} import {', '.join(sorted(v))}" for k, v in sorted(groups.items())]
    return "\n".join(lines) + tail


def rewrite(text: str) -> str:
    text = re.sub(r"(?m)^([ \t]*)from ddpm_lib import ([a-z_][\w ,]*?)(?=[ \t]*(#.*)?$)", _from_package, text)
    text = re.sub(r"(?<![\w/])ddpm_lib\.(" + _ALT + r")\b(?!/|\.(?:" + _NEW_DATA + r")\b| import (?:" + _NEW_DATA + r")\b)",
                  lambda m: "ddpm_lib." + MODULES[m.group(1)], text)
    text = re.sub(r"(?<![\w/])ddpm_lib/(" + _ALT + r")(\.py|/)(?<!data/)",
                  lambda m: "ddpm_lib/" + MODULES[m.group(1)].replace(".", "/") + m.group(2), text)
    text = re.sub(r"ddpm_lib[./]pretrained[./]build\b", "tools.build_pretrained", text)
    # load_model returns (model, schedule, config, step): a three-name unpacking gets a fourth
    text = re.sub(r"(\w+), (\w+), (\w+) = load_model_from_checkpoint\(", r"\1, \2, \3, _ = load_model(", text)
    text = re.sub(r"(?m)^([ \t]*)from (ddpm_lib[\w.]*) import \(([\w ,\n]+)\)()", _from_module, text)
    text = re.sub(r"(?m)^([ \t]*)from (ddpm_lib[\w.]*) import ([\w ,]+?)([ \t]*#.*)?$", _from_module, text)
    return re.sub(r"\bload_model_from_checkpoint\b", "load_model", text)


def rewrite_file(path: str, markdown: bool = False) -> bool:
    """Rewrite one file in place; True when it changed."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".ipynb"):
        nb = json.loads(text)
        for cell in nb["cells"]:
            if cell["cell_type"] == "code" or (markdown and cell["cell_type"] == "markdown"):
                src = "".join(cell["source"])
                cell["source"] = rewrite(src).splitlines(keepends=True)
        new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    else:
        new = rewrite(text)
    if new != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    return new != text


def main(argv: list[str]) -> int:
    markdown = "--markdown" in argv
    changed = [p for p in argv if p != "--markdown" and rewrite_file(p, markdown)]
    print(f"rewrote {len(changed)} file(s)" + "".join(f"\n  {p}" for p in changed))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
