"""Wall time of each course notebook, executed headless in a fresh kernel, as ``make run`` does.

    DDPM_MODE=cpu DDPM_DATA_DIR=... python benchmarks/notebook_times.py --out build/notebooks-cpu
    DDPM_MODE=fast python benchmarks/notebook_times.py --out build/notebooks-fast

Runs the notebooks one after another (each needs the one before it: 05-07 use 04's and 06's
checkpoints), so the figures are absolute times on whatever the machine was doing: run it on an idle
machine. Prints one markdown table row per notebook and the total, with the date, torch version,
mode and CPU count, for the README's notebook table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the executed notebooks")
    p.add_argument("--only", default="", help="comma-separated notebook prefixes (default: all, e.g. 04,05)")
    p.add_argument("--json", type=Path, default=None, help="also write {notebook: seconds} here")
    args = p.parse_args(argv)

    import nbformat
    import torch
    from nbconvert.preprocessors import ExecutePreprocessor

    from ddpm_lib.settings import settings

    wanted = [x for x in args.only.split(",") if x]
    notebooks = sorted(p for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")
                       if not wanted or p.name[:2] in wanted)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{time.strftime('%Y-%m-%d')}, torch {torch.__version__}, Python {platform.python_version()}, "
          f"mode {settings.mode}, {os.cpu_count()} CPUs ({platform.machine()})")
    print("| notebook | wall time |\n|---|---|")
    total, times = 0.0, {}
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        t = time.perf_counter()
        ExecutePreprocessor(timeout=-1, kernel_name="python3").preprocess(nb, {"metadata": {"path": str(path.parent)}})
        dt = time.perf_counter() - t
        total += dt
        times[path.stem] = round(dt, 1)
        nbformat.write(nb, args.out / path.name)
        print(f"| {path.stem} | {dt / 60:.1f} min ({dt:.0f} s) |", flush=True)
    print(f"| **all {len(notebooks)}** | **{total / 60:.1f} min ({total:.0f} s)** |")
    if args.json:
        args.json.write_text(json.dumps(times, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
