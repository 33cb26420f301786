"""benchmarks/gpu_suite.py --smoke: the GPU suite's code paths on a CPU, writing the files a GPU run writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.gpu_suite import OUT_FILES  # noqa: E402


def run_suite(out: Path, *extra: str) -> dict:
    env = {"OMP_NUM_THREADS": "1", "PATH": "", "PYTHONPATH": str(ROOT), "HOME": str(out.parent),
           "MPLBACKEND": "Agg"}
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--smoke", "--out", str(out),
                          "--budget-s", "1800", *extra], capture_output=True, text=True, timeout=1800, env=env)
    assert (out / "suite.json").is_file(), res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((out / "suite.json").read_text())
    errors = {k: v.get("error") for k, v in report["sections"].items() if "error" in v or "skipped" in v}
    assert res.returncode == 0 and not errors, (errors, res.stdout[-2000:], res.stderr[-2000:])
    return report


def test_smoke_writes_what_the_gpu_run_writes(tmp_path):
    """`gpu_suite.py --smoke`: every section's code path on a CPU (about 30 s), the same files as on a GPU."""
    out = tmp_path / "out"
    report = run_suite(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUT_FILES)
    assert len(OUT_FILES) <= 8  # the device tool brings back at most 8 files
    sec = report["sections"]
    env = sec["environment"]
    assert env["torch"] == torch.__version__ and env["gpu"] is None and "bf16_supported" in env
    tp = sec["trainer_paths"]
    assert tp["fp16_gradscaler"]["mixed_precision"] == "bf16"  # fp16 needs CUDA: smoke runs bf16
    assert tp["bf16_compile"]["compile"] is True
    for r in (tp["fp16_gradscaler"], tp["bf16_compile"]):
        assert r["steps"] == report["sizes"]["trainer_steps"] and r["loss_finite"] and r["img_per_s"] > 0
    # throughput: every variant, interleaved, with paired speedups and their spread
    for mode in ("train", "inference"):
        configs = sec["unet_throughput"][mode]["configs"]
        assert {"fp32", "bf16", "bf16_cl", "bf16_cl_compile"} <= set(configs)
        for sp in sec["unet_throughput"][mode]["speedups"].values():
            assert sp["min"] <= sp["paired"] <= sp["max"] and len(sp["per_round"]) == report["sizes"]["rounds"]
    # recipes: throughput measured on data
    for name in ("fashion_mnist_gpu", "cifar10_gpu"):
        assert sec["recipes"][name]["img_per_s"] > 0 and sec["recipes"][name]["full_run_steps"] > 0
    # starter: FID at each guidance scale, grids with one row per class, an exported checkpoint
    st = sec["starter"]
    assert set(st["fid"]) == {"w=0", "w=1", "w=3"} and all(v["fid"] >= 0 for v in st["fid"].values())
    k = report["sizes"]["grid_per_class"]
    for w in (0, 1, 3):
        width, height = Image.open(out / f"grid_w{w}.png").size
        assert height > width * 10 / k * 0.9  # 10 rows (classes) of k images
    from ddpm_lib.loading import load_model

    model, schedule, cfg, _ = load_model(out / "cifar10.pt", device="cpu")
    assert model.null_class == 10 and cfg.class_conditional and st["export"]["fits_package_limit"]
    assert "FID" in (out / "cifar10_card.md").read_text()
