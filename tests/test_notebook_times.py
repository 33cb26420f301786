"""The per-notebook times come from one file, benchmarks/notebook_times.json (issue 19 item 4).

README's notebook table, the map in notebook 00 and every notebook's **Time:** line must state exactly
what the file says; the check runs over the notebooks that exist (a future 08 needs an entry too).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks import notebook_times as nt  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_the_table_is_complete_and_labelled():
    times = nt.load_times()
    m = times["measured"]
    for key in ("date", "machine", "bf16_native", "torch", "how", "total", "probe_step_s"):
        assert key in m, f"benchmarks/notebook_times.json: 'measured' needs {key!r}"
    assert isinstance(m["bf16_native"], bool)
    for path in NOTEBOOKS:
        entry = times["notebooks"].get(path.stem)
        assert entry is not None, f"{path.name}: add an entry to benchmarks/notebook_times.json"
        assert set(entry) - {"cpu_clock", "measured"} == {"fast", "cpu", "gpu", "gpu_note"}, (path.name, set(entry))
        for key in ("date", "machine", "bf16_native", "torch", "how", "probe_step_s"):  # re-timed alone: its own context
            assert "measured" not in entry or key in entry["measured"], (path.name, key)
        if "cpu_clock" in entry:  # the clock-bound part of the cpu time cannot exceed it
            assert 0 < nt.seconds(entry["cpu_clock"]) <= nt.seconds(entry["cpu"]), (path.name, entry)
        if not times["gpu"]["measured"]:  # until a GPU has run them, no gpu figure may look like a measurement
            assert entry["gpu"] == "not measured", (path.name, entry["gpu"])


def test_readme_map_and_time_lines_agree_with_the_table():
    problems = nt.check(ROOT)
    assert not problems, "\n".join(problems) + "\n(fix: python benchmarks/notebook_times.py --sync)"


def test_every_time_line_names_the_machine_and_bf16():
    times = nt.load_times()
    for path in NOTEBOOKS:
        line, where = nt.time_line(times, path.stem), nt.context(times, path.stem)
        assert where["date"] in line and where["machine"] in line
        assert "native bf16" in line


@pytest.fixture
def copy_of_course(tmp_path):
    for name in ("README.md", "benchmarks/notebook_times.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "notebooks").mkdir()
    for path in NOTEBOOKS:
        shutil.copy(path, tmp_path / "notebooks" / path.name)
    return tmp_path


def test_the_check_fails_when_one_place_disagrees_and_sync_repairs_it(copy_of_course):
    root = copy_of_course
    table = json.loads((root / "benchmarks/notebook_times.json").read_text())
    stem = NOTEBOOKS[-1].stem
    table["notebooks"][stem]["cpu"] = "99 min"  # a new measurement entered in the one file
    (root / "benchmarks/notebook_times.json").write_text(json.dumps(table, indent=1))
    problems = nt.check(root)
    assert any("README.md" in p and stem[:2] in p for p in problems)
    assert any("(the map)" in p for p in problems)
    assert any(p.startswith(f"{stem}.ipynb") for p in problems)
    changed = nt.sync(root)
    assert len(changed) == 3 and nt.check(root) == []  # README, notebook 00 (its map) and the notebook itself
    assert "99 min" in (root / "README.md").read_text()


def test_a_notebook_without_an_entry_is_reported(copy_of_course):
    root = copy_of_course
    shutil.copy(NOTEBOOKS[-1], root / "notebooks" / "09_unlisted.ipynb")
    assert any("09_unlisted.ipynb: no entry" in p for p in nt.check(root))


def test_a_probe_line_edited_by_hand_is_reported_and_sync_repairs_it(copy_of_course):
    """04-08 print what their Time line means on the student's machine from numbers the table owns."""
    root = copy_of_course
    path = root / "notebooks" / "05_sampling.ipynb"
    times = nt.load_times(root / "benchmarks/notebook_times.json")
    good = nt.probe_line(times, "05_sampling")
    assert good in path.read_text() or json.dumps(good)[1:-1] in path.read_text()
    text = path.read_text().replace("cpu_probe_s=", "cpu_probe_s=9")
    path.write_text(text)
    assert any(p.startswith("05_sampling.ipynb: the probe line") for p in nt.check(root))
    assert nt.sync(root) == [str(path)] and nt.check(root) == []


def test_probe_line_reads_the_table():
    times = {"measured": {"probe_step_s": {"fast": 0.3, "cpu": 0.25}},
             "notebooks": {"04_x": {"fast": "21 s", "cpu": "12.5 min", "cpu_clock": "8 min"}, "05_x": {"fast": "9 s", "cpu": "2 min"}}}
    assert nt.probe_line(times, "04_x") == ("print(machine_probe.time_report(settings.mode, settings.device, fast_s=21, "
                                            "cpu_s=750, clock_s=480, fast_probe_s=0.3, cpu_probe_s=0.25))")
    assert "clock_s" not in nt.probe_line(times, "05_x") and "cpu_s=120," in nt.probe_line(times, "05_x")
    with pytest.raises(ValueError, match="not a time"):
        nt.seconds("not measured")


REFERENCE = {"date": "2026-12-02", "machine": "an idle 2-core x86-64 CPU", "bf16_native": True, "bf16_detail": "AVX512-BF16",
             "torch": "2.14.1", "probe_step_s": {"fast": 0.3, "cpu": 0.25}}


def test_a_notebook_measured_at_another_time_keeps_its_own_probe():
    times = {"measured": REFERENCE,
             "notebooks": {"08_x": {"fast": "9 s", "cpu": "9.5 min", "cpu_clock": "8 min",
                                    "measured": {"probe_step_s": {"cpu": 0.21}}}}}
    line = nt.probe_line(times, "08_x")
    assert "cpu_probe_s=0.21)" in line and "fast_probe_s=0.3," in line


def test_a_notebook_retimed_on_another_machine_says_so_in_its_time_line():
    """A notebook timed alone on another machine states that machine, date and bf16, not the course-wide ones."""
    own = {"date": "2026-12-04", "machine": "an idle 2-core AMD EPYC", "bf16_native": False, "probe_step_s": {"cpu": 0.445}}
    entry = {"fast": "20 s", "cpu": "9.6 min", "gpu": "not measured", "gpu_note": "x", "cpu_clock": "8 min"}
    times = {"measured": REFERENCE, "notebooks": {"07_x": dict(entry), "08_x": {**entry, "measured": own}}}
    line, other = nt.time_line(times, "08_x"), nt.time_line(times, "07_x")
    assert "measured 2026-12-04 on an idle 2-core AMD EPYC without native bf16" in line and "AVX512" not in line
    assert "measured 2026-12-02 on an idle 2-core x86-64 CPU with native bf16 (AVX512-BF16)" in other
    assert "cpu_probe_s=0.445)" in nt.probe_line(times, "08_x") and "cpu_probe_s=0.25)" in nt.probe_line(times, "07_x")


@pytest.mark.parametrize("place", ["README.md", "notebooks/00_welcome.ipynb"])
def test_the_probe_sentence_edited_by_hand_is_reported_and_sync_repairs_it(copy_of_course, place):
    """README and 00's map state the reference probes; the numbers are the table's, not typed copies."""
    root = copy_of_course
    times = nt.load_times(root / "benchmarks/notebook_times.json")
    path = root / place
    assert nt.probe_sentence(times) in path.read_text()
    cpu = f"{times['measured']['probe_step_s']['cpu']:.3f} s during the cpu-mode run"
    path.write_text(path.read_text().replace(cpu, "0.111 s during the cpu-mode run"))
    assert any(p.startswith(f"{path.name if place == 'README.md' else '00_welcome.ipynb (the map)'}: the probe sentence")
               for p in nt.check(root)), nt.check(root)
    assert nt.sync(root) == [str(path)] and nt.check(root) == []
