"""No command destroys a file it did not write (issue 21): the no-clobber rule of ddpm_lib.files for every
command with an output path: ``train --out``, ``train --config`` reuse, ``sample --out / --out-dir``,
``evaluate --out``, ``grade --out``, ``student OUT_DIR`` and the feature classifier's ``train --out``.

Each refusal: exit status 2, one line on stderr naming the path and the flag that allows it, no traceback,
and every file of the test's folder byte-identical afterwards (SHA-256 before and after). Each allowed case
(the command's own output, or the flag given) still works. One tiny trained run is shared (module fixture).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_refused_in_one_line, call_main, tree_hashes

from ddpm_lib.cli import main
from ddpm_lib.course import grade, student
from ddpm_lib.evaluation import classifier
from ddpm_lib.evaluation.classifier import FeatureClassifier, save_classifier
from ddpm_lib.files import ClobberError, check_output_file, is_png

pytestmark = pytest.mark.usefixtures("one_thread")
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def train_args(w: Path, out, *extra: str) -> list[str]:
    return ["train", "--preset", "tiny", "--dataset", "npy", "--data-root", str(w / "squares.npy"),
            "--unet", '{"image_size": 16}', "--out", str(out), "--steps", "2", "--batch-size", "8",
            "--num-timesteps", "50", "--warmup-steps", "1", "--log-every", "1", "--checkpoint-every", "1",
            "--progress", "false", "--device", "cpu", "--tensorboard", "false", *extra]


def sample_args(w: Path, *extra: str) -> list[str]:
    return ["sample", "--ckpt", str(w / "run" / "final.pt"), "--device", "cpu", "--num", "2", "--steps", "2", *extra]


def evaluate_args(w: Path, *extra: str) -> list[str]:
    return ["evaluate", "--ckpt", str(w / "run" / "final.pt"), "--device", "cpu", "--num", "4", "--steps", "2",
            "--batch", "4", "--classifier", str(w / "clf.pt"), *extra]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A finished 2-step run, a tiny feature classifier, and files of other kinds: a notebook, a user's folder."""
    w = tmp_path_factory.mktemp("no_clobber")
    rng = np.random.default_rng(0)
    imgs = np.zeros((24, 16, 16), np.uint8)
    for i in range(24):
        r, c = rng.integers(0, 10, 2)
        imgs[i, r:r + 6, c:c + 6] = 255
    np.save(w / "squares.npy", imgs)
    assert main(train_args(w, w / "run")) == 0
    clf = FeatureClassifier(in_channels=1, num_classes=2, width=4, feature_dim=8)
    save_classifier(clf, w / "clf.pt", dataset="npy")
    shutil.copy(NOTEBOOKS / "00_welcome.ipynb", w / "mine.ipynb")
    user = w / "user_folder"  # a folder of someone's own files that happen to have a run's names
    (user / "samples").mkdir(parents=True)
    (user / "config.json").write_text(json.dumps({"project": "thesis", "seed": 3}))
    (user / "metrics.csv").write_text("epoch,accuracy\n1,0.5\n")
    (user / "samples" / "figure.png").write_bytes(b"\x89PNG\r\n\x1a\n a figure")
    (w / "notes.txt").write_text("my notes\n")
    return w


snapshot = tree_hashes


def run_cli(argv, capsys):
    return call_main(main, argv, capsys)


def run_grade(argv, capsys):
    return call_main(grade.main, argv, capsys)


def run_classifier(argv, capsys):
    return call_main(classifier.main, argv, capsys)


def run_student(argv, capsys):
    return call_main(student.main, argv, capsys)


REFUSED = [
    # (id, runner, argv of the world, words the one line must hold)
    ("sample-out-checkpoint", run_cli, lambda w: sample_args(w, "--out", str(w / "run" / "final.pt")),
     ["final.pt", "a PyTorch checkpoint", "--overwrite"]),
    ("sample-out-notebook", run_cli, lambda w: sample_args(w, "--out", str(w / "mine.ipynb")),
     ["mine.ipynb", "a Jupyter notebook", "--overwrite"]),
    ("sample-out-text", run_cli, lambda w: sample_args(w, "--out", str(w / "notes.txt")), ["notes.txt", "--overwrite"]),
    ("sample-out-folder", run_cli, lambda w: sample_args(w, "--out", str(w / "run")), ["is a folder", "run"]),
    ("sample-out-empty", run_cli, lambda w: sample_args(w, "--out", ""), ["--out", "empty"]),
    ("sample-out-dir-user-folder", run_cli,
     lambda w: sample_args(w, "--out", str(w / "g.png"), "--out-dir", str(w / "user_folder")),
     ["--out-dir", "user_folder", "--overwrite"]),
    ("sample-out-dir-a-file", run_cli, lambda w: sample_args(w, "--out", str(w / "g.png"), "--out-dir", str(w / "notes.txt")),
     ["--out-dir", "notes.txt", "not a folder"]),
    ("evaluate-out-checkpoint", run_cli, lambda w: evaluate_args(w, "--out", str(w / "run" / "final.pt")),
     ["final.pt", "a PyTorch checkpoint", "--overwrite"]),
    ("evaluate-out-notebook", run_cli, lambda w: evaluate_args(w, "--out", str(w / "mine.ipynb")),
     ["mine.ipynb", "--overwrite"]),
    ("train-out-user-folder", run_cli, lambda w: train_args(w, w / "user_folder"),
     ["user_folder", "not a training run", "--overwrite"]),
    ("train-out-empty", run_cli, lambda w: train_args(w, ""), ["out_dir", "empty"]),
    ("train-out-a-file", run_cli, lambda w: train_args(w, w / "notes.txt"), ["notes.txt", "not a folder"]),
    ("train-config-reuse", run_cli, lambda w: ["train", "--config", str(w / "run" / "config.json"), "--steps", "1"],
     ["already holds a run", "--overwrite"]),
    ("grade-out-checkpoint", run_grade, lambda w: [str(w / "sub"), "--out", str(w / "run" / "final.pt")],
     ["final.pt", "not a grades CSV", "--overwrite"]),
    ("grade-out-notebook", run_grade, lambda w: [str(w / "sub"), "--out", str(w / "mine.ipynb")],
     ["mine.ipynb", "a Jupyter notebook", "--overwrite"]),
    ("grade-out-empty", run_grade, lambda w: [str(w / "sub"), "--out", ""], ["--out", "empty"]),
    ("classifier-out-checkpoint", run_classifier,
     lambda w: ["train", "--dataset", "fashion_mnist", "--out", str(w / "run" / "final.pt")],
     ["final.pt", "a PyTorch checkpoint", "not a feature classifier", "--overwrite"]),
    ("student-into-sources", run_student, lambda w: [str(NOTEBOOKS), str(NOTEBOOKS)], ["source folder"]),
    ("student-over-worked-notebook", run_student,
     lambda w: [str(NOTEBOOKS / "00_welcome.ipynb"), str(w / "worked")], ["00_welcome.ipynb", "--overwrite"]),
    ("student-out-a-file", run_student, lambda w: [str(NOTEBOOKS / "00_welcome.ipynb"), str(w / "notes.txt")],
     ["notes.txt", "not a folder"]),
]


def _grade_class(w: Path) -> None:
    """A class of one student who handed in 00_welcome (enough for grade to reach its --out check)."""
    (w / "sub" / "erin").mkdir(parents=True, exist_ok=True)
    (w / "sub" / "erin" / "00_welcome.ipynb").write_text(json.dumps({"cells": [], "nbformat": 4, "nbformat_minor": 5,
                                                                      "metadata": {}}))


def _worked_notebook(w: Path) -> None:
    """A student's worked copy of 00_welcome in a folder (it has outputs): not a student copy to replace."""
    nb = json.loads((NOTEBOOKS.parent / "student" / "00_welcome.ipynb").read_text())
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["outputs"], code["execution_count"] = [{"output_type": "stream", "name": "stdout", "text": "my work\n"}], 1
    (w / "worked").mkdir(exist_ok=True)
    (w / "worked" / "00_welcome.ipynb").write_text(json.dumps(nb))


@pytest.mark.parametrize("name, runner, argv_of, words", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_in_one_line_and_nothing_changed(world, name, runner, argv_of, words, capsys):
    _grade_class(world)
    _worked_notebook(world)
    before = snapshot(world)
    notebooks_before = snapshot(NOTEBOOKS)
    rc, out, err = runner(argv_of(world), capsys)
    assert_refused_in_one_line(rc, out, err, words)
    after = snapshot(world)
    assert {k: v for k, v in after.items() if before.get(k) != v} == {}, "a file was written or changed"
    assert after.keys() == before.keys(), "a file was added or removed"
    assert snapshot(NOTEBOOKS) == notebooks_before
    assert not list(world.rglob("*.tmp"))


def test_a_run_never_stores_overwrite_or_resume(world):
    stored = json.loads((world / "run" / "config.json").read_text())
    assert "overwrite" not in stored and "resume" not in stored
    payload = torch.load(world / "run" / "final.pt", weights_only=True)
    assert "overwrite" not in payload["train_config"] and "resume" not in payload["train_config"]


def test_config_reuse_ignores_a_stored_overwrite_of_an_older_run(world, capsys):
    """An older run's config.json may hold "overwrite": true; reusing it must still not replace the run."""
    old = world / "old_run"
    if not old.exists():
        shutil.copytree(world / "run", old)
        stored = json.loads((old / "config.json").read_text())
        (old / "config.json").write_text(json.dumps({**stored, "out_dir": str(old), "overwrite": True, "resume": True}))
    before = snapshot(old)
    rc, out, err = run_cli([*train_args(world, old), "--config", str(old / "config.json"), "--steps", "1"], capsys)
    assert rc == 2 and "already holds a run" in err and err.count("\n") == 1, err
    assert 'ignoring "overwrite": true' in out and 'ignoring "resume": true' in out
    assert snapshot(old) == before


def test_allowed_sample_replaces_its_own_png_and_anything_with_the_flag(world, capsys):
    grid, pngs = world / "grid.png", world / "pngs"
    for _ in range(2):  # the second time the grid and the folder hold this command's own output
        rc, _, err = run_cli(sample_args(world, "--out", str(grid), "--out-dir", str(pngs)), capsys)
        assert rc == 0, err
    assert is_png(grid) and sorted(p.name for p in pngs.iterdir()) == ["00000.png", "00001.png"]
    victim = world / "victim.txt"
    victim.write_text("replace me\n")
    rc, _, err = run_cli(sample_args(world, "--out", str(victim), "--overwrite"), capsys)
    assert rc == 0 and is_png(victim), err


def test_out_dir_never_replaces_a_non_png_even_with_the_flag(world, capsys):
    d = world / "mixed"
    d.mkdir(exist_ok=True)
    (d / "00001.png").write_text("not an image\n")
    before = snapshot(d)
    rc, _, err = run_cli(sample_args(world, "--out", str(world / "g2.png"), "--out-dir", str(d), "--overwrite"), capsys)
    assert rc == 2 and "00001.png" in err and err.count("\n") == 1, err
    assert snapshot(d) == before and not (world / "g2.png").exists()


def test_allowed_evaluate_replaces_its_own_report_and_anything_with_the_flag(world, capsys):
    report = world / "report.json"
    for _ in range(2):
        rc, _, err = run_cli(evaluate_args(world, "--out", str(report)), capsys)
        assert rc == 0, err
    assert json.loads(report.read_text())["num_samples"] == 4
    victim = world / "victim.json"
    victim.write_text('{"mine": 1}')
    rc, _, err = run_cli(evaluate_args(world, "--out", str(victim), "--overwrite"), capsys)
    assert rc == 0 and "metrics" in json.loads(victim.read_text()), err


def test_allowed_train_into_a_new_or_empty_folder_a_run_or_with_the_flag(world, capsys):
    (world / "empty").mkdir(exist_ok=True)
    rc, _, err = run_cli(train_args(world, world / "empty"), capsys)
    assert rc == 0, err
    rc, _, err = run_cli(train_args(world, world / "empty", "--overwrite"), capsys)  # its own run, started again
    assert rc == 0, err
    user = world / "user_copy"
    shutil.copytree(world / "user_folder", user)
    rc, _, err = run_cli(train_args(world, user, "--overwrite"), capsys)
    assert rc == 0 and (user / "final.pt").is_file(), err
    # --config reuse into another folder: the run's settings, a new run
    rc, _, err = run_cli(["train", "--config", str(world / "run" / "config.json"), "--out", str(world / "again")], capsys)
    assert rc == 0, err


def test_allowed_grade_out_that_is_a_grades_csv_passes_the_rule(world, capsys):
    """An existing grades CSV (this command's own output) passes the --out rule: grade goes on to the next
    check (here the kernel, which does not exist), and the CSV is still there, unchanged."""
    _grade_class(world)
    csv_path = world / "grades.csv"
    csv_path.write_text(",".join(grade.FIELDS) + "\n")
    before = csv_path.read_bytes()
    rc, _, err = run_grade([str(world / "sub"), "--out", str(csv_path), "--kernel", "no-such-kernel"], capsys)
    assert rc == 2 and "no such Jupyter kernel" in err, err
    assert csv_path.read_bytes() == before


def test_allowed_student_replaces_its_own_copy_and_a_worked_one_with_the_flag(world, capsys):
    out = world / "copies"
    src = str(NOTEBOOKS / "00_welcome.ipynb")
    for _ in range(2):
        rc, _, err = run_student([src, str(out)], capsys)
        assert rc == 0, err
    _worked_notebook(world)
    rc, _, err = run_student([src, str(world / "worked"), "--overwrite"], capsys)
    assert rc == 0, err
    assert student.is_student_copy(world / "worked" / "00_welcome.ipynb")


def test_allowed_classifier_out_that_is_a_classifier(world):
    """The feature classifier's train --out may replace a classifier file (its own output), nothing else."""
    assert classifier.is_classifier_file(world / "clf.pt")
    assert not classifier.is_classifier_file(world / "run" / "final.pt")
    assert check_output_file(world / "clf.pt", option="--out", kind="x", is_own=classifier.is_classifier_file)


def test_the_rule_itself():
    """check_output_file: a new path passes; an existing file passes only when it is the command's own kind."""
    with pytest.raises(ClobberError, match="empty"):
        check_output_file("  ", option="--out", kind="x", is_own=lambda p: True)
    here = Path(__file__)
    assert check_output_file(here.with_name("no_such_file.png"), option="--out", kind="x", is_own=lambda p: False)
    assert check_output_file(here, option="--out", kind="x", is_own=lambda p: True) == here
    with pytest.raises(ClobberError, match="--overwrite"):
        check_output_file(here, option="--out", kind="x", is_own=lambda p: False)
