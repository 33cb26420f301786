"""Wall time of each course notebook, executed headless in a fresh kernel, as ``make run`` does.

    DDPM_MODE=cpu DDPM_DATA_DIR=... python benchmarks/notebook_times.py --out build/notebooks-cpu
    DDPM_MODE=fast python benchmarks/notebook_times.py --out build/notebooks-fast

Runs the notebooks one after another (each needs the one before it: 05-07 use 04's and 06's
checkpoints), so the figures are absolute times on whatever the machine was doing: run it on an idle
machine. Prints one markdown table row per notebook and the total, with the date, torch version,
mode and CPU count.

The figures the course states live in ONE file, ``benchmarks/notebook_times.json``: enter a new
measurement there (date, machine, whether bf16 was native, the per-notebook figures; a notebook re-timed
alone carries its own ``measured``: date, machine, bf16, torch, how and probe_step_s), then

    python benchmarks/notebook_times.py --sync

rewrites the README's notebook table, the map in ``notebooks/00_welcome.ipynb`` (with their sentence on the
reference probe), every notebook's ``**Time:**`` line and the probe line at the top of 04-08 (``ddpm_lib.course.machine_probe``: the notebook's
times and the reference machine's probe, which scale the Time line to the student's machine) from it (``--check`` only lists what disagrees; ``tests/test_notebook_times.py`` runs
the same check).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMES_FILE = ROOT / "benchmarks" / "notebook_times.json"
TIMES_LINK = "([all times](../benchmarks/notebook_times.json))."
# a notebook's Time line: from "**Time:**" to the link that closes the generated part (free text may follow)
TIME_LINE_RE = re.compile(r"\*\*Time:\*\*.*?" + re.escape(TIMES_LINK), re.S)
ROW_RE = re.compile(r"^\| (\d\d) \|")
# the probe line of the notebooks that train or sample for minutes: scales the Time line to the student's machine
PROBE_RE = re.compile(r"print\(machine_probe\.time_report\(.*\)\)")
PROBED = ("04", "05", "06", "07", "08")
# the sentence of README and 00's map that states the reference machine's probe in each mode
PROBE_SENTENCE_RE = re.compile(r"The same machine ran the probe's training step in [0-9.]+ s during the cpu-mode run "
                               r"and in [0-9.]+ s during the fast-mode one")


def load_times(path: Path = TIMES_FILE) -> dict:
    """The time table: {"measured": {...}, "gpu": {...}, "notebooks": {stem: {fast, cpu, gpu, gpu_note}}}."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def table_cells(times: dict, stem: str) -> list[str]:
    """The three time cells of a notebook's row in the README table and in 00's map: fast, cpu, gpu."""
    entry = times["notebooks"][stem]
    return [entry["fast"], entry["cpu"], entry["gpu"]]


def context(times: dict, stem: str) -> dict:
    """Where and when a notebook's fast and cpu times were measured: the course-wide ``measured``, or the
    notebook's own ``measured`` when it was re-timed alone (another date, machine or bf16), key by key."""
    return {**times["measured"], **times["notebooks"][stem].get("measured", {})}


def time_line(times: dict, stem: str) -> str:
    """The generated part of a notebook's **Time:** line (the notebook may add its own sentences after it)."""
    m, e = context(times, stem), times["notebooks"][stem]
    bf16 = f"with native bf16 ({m['bf16_detail']})" if m["bf16_native"] else "without native bf16 (training ran in fp32)"
    return (f"**Time:** {e['fast']} in fast mode and {e['cpu']} in cpu mode, measured {m['date']} on {m['machine']} "
            f"{bf16}, torch {m['torch']}. On a GPU (gpu mode): {e['gpu']}; {e['gpu_note']} {TIMES_LINK}")


def seconds(figure: str) -> float:
    """A time as the table states it ("21 s", "6.7 min") in seconds."""
    m = re.fullmatch(r"([0-9.]+) (s|min)", figure)
    if m is None:
        raise ValueError(f"benchmarks/notebook_times.json: {figure!r} is not a time like '21 s' or '6.7 min'")
    return float(m.group(1)) * (60 if m.group(2) == "min" else 1)


def probe_sentence(times: dict) -> str:
    """README's and 00's statement of the reference probe of each mode (``measured.probe_step_s``)."""
    probe = times["measured"]["probe_step_s"]
    return (f"The same machine ran the probe's training step in {probe['cpu']:.3f} s during the cpu-mode run "
            f"and in {probe['fast']:.3f} s during the fast-mode one")


def probe_line(times: dict, stem: str) -> str:
    """The code line at the top of a probed notebook: its measured times, the part of the cpu time a clock bounds
    (``cpu_clock``) and the reference machine's probe when each mode was measured, for ``machine_probe.time_report``
    (``measured.probe_step_s``, or the notebook's own when it was measured at another time or on another machine)."""
    e = times["notebooks"][stem]
    probe = {**times["measured"]["probe_step_s"], **e.get("measured", {}).get("probe_step_s", {})}
    clock = f", clock_s={seconds(e['cpu_clock']):g}" if e.get("cpu_clock") else ""
    return (f"print(machine_probe.time_report(settings.mode, settings.device, fast_s={seconds(e['fast']):g}, "
            f"cpu_s={seconds(e['cpu']):g}{clock}, fast_probe_s={probe['fast']:g}, cpu_probe_s={probe['cpu']:g}))")


def _sync_rows(text: str, times: dict, stems: dict[str, str]) -> str:
    """Replace the last three cells of every table row ``| NN | ...`` whose notebook is in the table."""
    out = []
    for line in text.split("\n"):
        m = ROW_RE.match(line)
        if m and m.group(1) in stems:
            cells = line.split("|")  # "", " 04 ", ..., " fast ", " cpu ", " gpu ", ""
            cells[-4:-1] = [f" {c} " for c in table_cells(times, stems[m.group(1)])]
            line = "|".join(cells)
        out.append(line)
    return "\n".join(out)


def _row_cells(text: str) -> dict[str, list[str]]:
    """{NN: [fast, cpu, gpu]} for the table rows in ``text`` (for the check)."""
    rows = {}
    for line in text.split("\n"):
        m = ROW_RE.match(line)
        if m:
            rows.setdefault(m.group(1), []).append([c.strip() for c in line.split("|")[-4:-1]])
    return rows


def _notebooks(root: Path) -> dict[str, Path]:
    return {p.name[:2]: p for p in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))}


def check(root: Path = ROOT, times: dict | None = None) -> list[str]:
    """Every place that states a notebook's time, against the time table: one line per disagreement."""
    times = times or load_times(root / "benchmarks" / "notebook_times.json")
    problems = []
    notebooks = _notebooks(root)
    for path in notebooks.values():
        if path.stem not in times["notebooks"]:
            problems.append(f"{path.name}: no entry in benchmarks/notebook_times.json")
    welcome = notebooks.get("00")
    places = {"README.md": (root / "README.md").read_text(encoding="utf-8")}
    if welcome is not None:
        places[f"{welcome.name} (the map)"] = "\n".join(
            "".join(c["source"]) for c in json.loads(welcome.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "markdown")
    for where, text in places.items():
        rows = _row_cells(text)
        for nn, path in notebooks.items():
            if path.stem not in times["notebooks"]:
                continue
            found = rows.get(nn, [])
            if len(found) != 1:
                problems.append(f"{where}: {len(found)} table rows for notebook {nn}, expected 1")
            elif found[0] != table_cells(times, path.stem):
                problems.append(f"{where}: notebook {nn}'s times are {found[0]}, the table says {table_cells(times, path.stem)}")
        for nn in set(rows) - set(notebooks):
            problems.append(f"{where}: a table row for notebook {nn}, which does not exist")
        for total in times["measured"]["total"].values():
            if total not in text:
                problems.append(f"{where}: does not state the measured total {total!r}")
        sentences = PROBE_SENTENCE_RE.findall(text)
        if sentences != [probe_sentence(times)]:
            problems.append(f"{where}: the probe sentence is {sentences or 'missing'}, expected {probe_sentence(times)!r}")
    for path in notebooks.values():
        if path.stem not in times["notebooks"]:
            continue
        first = "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][0]["source"])
        lines = TIME_LINE_RE.findall(first)
        if lines != [time_line(times, path.stem)]:
            problems.append(f"{path.name}: the first cell's Time line is {lines or 'missing'}, "
                            f"expected {time_line(times, path.stem)!r}")
        if path.name[:2] in PROBED:
            code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text(encoding="utf-8"))["cells"]
                             if c["cell_type"] == "code")
            found = PROBE_RE.findall(code)
            if found != [probe_line(times, path.stem)]:
                problems.append(f"{path.name}: the probe line is {found or 'missing'}, expected {probe_line(times, path.stem)!r}")
    return problems


def sync(root: Path = ROOT) -> list[str]:
    """Rewrite README's table, 00's map and every Time line from the time table; return the files changed."""
    times = load_times(root / "benchmarks" / "notebook_times.json")
    notebooks = _notebooks(root)
    stems = {nn: p.stem for nn, p in notebooks.items() if p.stem in times["notebooks"]}
    changed = []
    readme = root / "README.md"
    old = readme.read_text(encoding="utf-8")
    new = PROBE_SENTENCE_RE.sub(probe_sentence(times), _sync_rows(old, times, stems))
    if new != old:
        readme.write_text(new, encoding="utf-8")
        changed.append(str(readme))
    for nn, path in notebooks.items():
        if path.stem not in times["notebooks"]:
            continue
        nb = json.loads(path.read_text(encoding="utf-8"))
        before = json.dumps(nb)
        for i, cell in enumerate(nb["cells"]):
            src = "".join(cell["source"])
            if i == 0:
                line = time_line(times, path.stem)
                src = TIME_LINE_RE.sub(lambda _, line=line: line, src, count=1)
            if nn == "00" and cell["cell_type"] == "markdown":
                src = PROBE_SENTENCE_RE.sub(probe_sentence(times), _sync_rows(src, times, stems))
            if nn in PROBED and cell["cell_type"] == "code":
                line = probe_line(times, path.stem)
                src = PROBE_RE.sub(lambda _, line=line: line, src)
            cell["source"] = src.splitlines(keepends=True)
        if json.dumps(nb) != before:
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            changed.append(str(path))
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="folder for the executed notebooks")
    p.add_argument("--sync", action="store_true", help="rewrite README, 00's map and the Time lines from notebook_times.json")
    p.add_argument("--check", action="store_true", help="list where README, 00's map or a Time line disagree with it")
    p.add_argument("--only", default="", help="comma-separated notebook prefixes (default: all, e.g. 04,05)")
    p.add_argument("--json", type=Path, default=None, help="also write {notebook: seconds} here")
    args = p.parse_args(argv)
    if args.sync or args.check:
        if args.sync:
            for f in sync():
                print(f"rewrote {f}")
        problems = check()
        print("\n".join(problems) or "README, 00's map and every Time line agree with benchmarks/notebook_times.json")
        return 1 if problems else 0
    if args.out is None:
        print("notebook_times.py: give --out DIR (to time the notebooks), or --sync / --check.", file=sys.stderr)
        return 2

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
    from ddpm_lib.course import machine_probe

    mode = settings.mode if settings.mode in machine_probe.PROBE_STEPS else "cpu"
    probe = machine_probe.probe(mode)  # measured as the notebooks' own probe line measures it in this mode
    print(f"probe (ddpm_lib.course.machine_probe.probe({mode!r})): {probe:.3f} s per training step")
    print("| notebook | wall time |\n|---|---|")
    total, times = 0.0, {"probe_step_s": round(probe, 4)}
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
