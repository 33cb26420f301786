"""The GPU half of the course in one call: throughput, Trainer paths, recipe times and a starter model.

    python benchmarks/gpu_suite.py --data .devdata --out $OUT          # on a GPU, <= ~8 minutes of wall time
    python benchmarks/gpu_suite.py --smoke --out /tmp/x                  # the same code paths on a CPU, tiny sizes

Writes into ``--out`` (at most 8 files, what the device tool brings back):

- ``suite.json``: every figure below, with the environment (GPU name, torch/CUDA versions, bf16
  support), rewritten after each section so a run cut short still leaves what it measured;
- ``suite.log``: the log;
- ``grid_w0.png``, ``grid_w1.png``, ``grid_w3.png``: the starter model's samples, one row per class,
  at classifier-free guidance scales w = 0, 1, 3;
- ``starter_loss.png``: its loss curve;
- ``cifar10.pt`` and ``cifar10_card.md``: its slim checkpoint (fp16 EMA weights) and model card,
  ready to replace ``ddpm_lib/pretrained/cifar10``.

Sections, in this order (each isolated: one that fails records its error and the others still run; a
section that would overrun the budget is skipped and says so):

1. ``environment``: GPU name, torch/CUDA/cuDNN versions, bf16 support, whether diffusers imports.
2. ``starter``: a class-conditional model with the ``cifar10_cpu`` recipe's architecture, trained for
   its share of the budget (~2 minutes on a GPU), its classifier-feature FID against the real test
   images at w = 0, 1, 3, the grids, the slim export and the card. First, because it is the one
   result that the later sections cannot give back if time runs short.
3. ``recipes``: images/s of the ``fashion_mnist_gpu`` and ``cifar10_gpu`` recipes on real data, and the
   training time of a full run of each (the recipe's steps at that speed): notebooks 04 and 06 in gpu mode.
4. ``trainer_paths``: the Trainer with ``mixed_precision="fp16"`` (GradScaler) and with ``compile=True``,
   a few hundred real steps each of the ``cifar10_gpu`` recipe.
5. ``unet_throughput``: ``cifar10_ddpm`` at batch 128, a training step (forward + MSE + backward +
   AdamW) and an inference forward, for fp32, bf16, bf16 + channels_last, bf16 + channels_last +
   ``torch.compile``, and diffusers' ``UNet2DModel`` at the same architecture and weights
   (``ddpm_lib.models.diffusers_compat``) when diffusers is importable; all interleaved in one process
   (``benchmarks/timing.py``), speedups as paired per-round ratios with their spread.

``--smoke`` runs every section on the CPU with tiny sizes (the ``tiny`` UNet, a few steps, FAST-mode
stand-in data, ``torch.compile`` with the ``eager`` backend, bf16 where fp16 needs CUDA) in about a
minute; ``tests/test_gpu_suite.py`` runs it. ``make gpu-data`` packs what ``--data`` needs;
``benchmarks/RESULTS.md`` gives the exact device call.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.timing import interleaved_times, median_spread, speedup  # noqa: E402

OUT_FILES = ("suite.json", "suite.log", "grid_w0.png", "grid_w1.png", "grid_w3.png", "starter_loss.png",
             "cifar10.pt", "cifar10_card.md")
GUIDANCE = (0.0, 1.0, 3.0)
SECTIONS = ("environment", "starter", "recipes", "trainer_paths", "unet_throughput")
SLIM_LIMIT_BYTES = 5 * 1024 * 1024  # the package's limit for a shipped model

SIZES = {
    "gpu": dict(unet_preset="cifar10_ddpm", unet_batch=128, rounds=5, steps=5, warmup=3, trainer_steps=200,
                recipe_steps=100, probe_steps=40, min_starter_steps=200, starter_batch=128, starter_train_s=120.0,
                fid_num=2000, grid_per_class=8, sample_steps=50, budget_s=450.0, later_sections_s=260.0),
    "smoke": dict(unet_preset="tiny", unet_batch=4, rounds=2, steps=1, warmup=1, trainer_steps=3,
                  recipe_steps=3, probe_steps=2, min_starter_steps=4, starter_batch=8, starter_train_s=0.0,
                  fid_num=40, grid_per_class=2, sample_steps=3, budget_s=900.0, later_sections_s=0.0),
}

log = logging.getLogger("gpu_suite")


# ---------------------------------------------------------------------------------------------------
# the run: budget, sections, JSON


class Suite:
    def __init__(self, out: Path, smoke: bool, budget_s: float | None, data_dir: Path, work: Path):
        self.out, self.smoke, self.work, self.data_dir = out, smoke, work, data_dir
        self.size = dict(SIZES["smoke" if smoke else "gpu"])
        if budget_s is not None:
            self.size["budget_s"] = budget_s
        self.t0 = time.monotonic()
        self.results: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                              "mode": "smoke" if smoke else "gpu", "sizes": self.size, "sections": {}}

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def remaining(self) -> float:
        return self.size["budget_s"] - self.elapsed()

    def save(self) -> None:
        self.results["elapsed_s"] = round(self.elapsed(), 1)
        tmp = self.out / ".suite.json.tmp"
        tmp.write_text(json.dumps(self.results, indent=1, default=str))
        os.replace(tmp, self.out / "suite.json")

    def section(self, name: str, fn, *args, need_s: float = 0.0):
        """Run one section; its result (or error, or skip) goes into results["sections"][name]."""
        if self.remaining() < need_s:
            self.results["sections"][name] = {"skipped": f"budget: {self.remaining():.0f} s left, needs ~{need_s:.0f} s"}
            log.warning("%s: skipped (%.0f s left)", name, self.remaining())
            self.save()
            return None
        log.info("== %s (%.0f s elapsed, %.0f s left)", name, self.elapsed(), self.remaining())
        t = time.monotonic()
        try:
            res = fn(*args)
        except Exception as e:  # noqa: BLE001 - one broken section must not cost the others
            res = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
            log.error("%s failed: %s", name, res["error"])
        res["seconds"] = round(time.monotonic() - t, 1)
        self.results["sections"][name] = res
        self.save()
        return res


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------------
# 1. environment


def environment(suite: Suite) -> dict:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
           "cpu_count": os.cpu_count(), "platform": platform.platform()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=torch.cuda.get_device_name(0), capability=f"{p.major}.{p.minor}",
                   gpu_memory_gib=round(p.total_memory / 2**30, 1), multiprocessors=p.multi_processor_count,
                   cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                   bf16_supported=torch.cuda.is_bf16_supported())
    else:
        from ddpm_lib.training.config import cpu_has_native_bf16

        env.update(gpu=None, bf16_supported=cpu_has_native_bf16(),  # native bf16 on this CPU (AVX512-BF16, AMX)
                   note="no CUDA GPU: smoke mode" if suite.smoke else "no CUDA GPU found")
    try:  # the version only: importing diffusers takes seconds; unet_throughput imports it when it runs
        from importlib.metadata import version

        env["diffusers"] = version("diffusers")
    except Exception:  # noqa: BLE001 - PackageNotFoundError
        env["diffusers"] = None
        env["diffusers_note"] = "not installed: the comparison with UNet2DModel is skipped (make gpu-data WHEELS=1)"
    env["ddpm_lib"] = __import__("ddpm_lib").__version__
    log.info("environment: %s", json.dumps(env))
    return env


# ---------------------------------------------------------------------------------------------------
# 2. UNet throughput


def unet_throughput(suite: Suite, device) -> dict:
    import torch
    import torch.nn.functional as F

    from benchmarks.unet_throughput import DiffusersAdapter, count_flops
    from ddpm_lib.models.unet import UNet

    s = suite.size
    torch.manual_seed(0)
    base = UNet.from_preset(s["unet_preset"])
    with torch.no_grad():  # random weights everywhere, so the equivalence check below means something
        for q in base.parameters():
            q.add_(torch.randn_like(q) * 0.02)
    cfg = base.config
    B = s["unet_batch"]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g).to(device)
    t = torch.randint(0, 1000, (B,), generator=g).to(device)
    noise = torch.randn(x.shape, generator=g).to(device)

    variants = {"fp32": (None, False, False), "bf16": (torch.bfloat16, False, False),
                "bf16_cl": (torch.bfloat16, True, False), "bf16_cl_compile": (torch.bfloat16, True, True)}
    models = {name: (copy.deepcopy(base), *v) for name, v in variants.items()}
    res = {"preset": s["unet_preset"], "batch": B, "params": sum(q.numel() for q in base.parameters()),
           "rounds": s["rounds"], "steps_per_round": s["steps"]}
    try:
        from ddpm_lib.models.diffusers_compat import to_diffusers

        theirs = to_diffusers(base)
        with torch.no_grad():
            a, b = base.eval()(x.cpu(), t.cpu()), DiffusersAdapter(theirs).eval()(x.cpu(), t.cpu())
        res["diffusers_max_abs_diff"] = float((a - b).abs().max())
        if res["diffusers_max_abs_diff"] > 1e-3 * max(1.0, float(a.abs().max())):
            raise ValueError(f"ddpm_lib and diffusers disagree (max |diff| {res['diffusers_max_abs_diff']:.3g})")
        models["diffusers_fp32"] = (DiffusersAdapter(theirs), None, False, False)
        models["diffusers_bf16_cl"] = (DiffusersAdapter(copy.deepcopy(theirs)), torch.bfloat16, True, False)
    except Exception as e:  # noqa: BLE001 - ImportError, or a diffusers that does not fit this torch
        res["diffusers"] = (f"skipped: diffusers is not usable here ({type(e).__name__}: {str(e)[:200]}); "
                            "carry its wheel (make gpu-data WHEELS=1)")
        log.info("unet: %s", res["diffusers"])
    res["flops_per_image"] = {"train": count_flops(base.train(), x.cpu()[:2], t.cpu()[:2], None, True) / 2,
                              "inference": count_flops(base.eval(), x.cpu()[:2], t.cpu()[:2], None, False) / 2}

    train, infer = {}, {}
    for name, (m, dtype, cl, comp) in models.items():
        m.to(device)
        xi, ni = x, noise
        if cl:
            m.to(memory_format=torch.channels_last)
            xi, ni = x.contiguous(memory_format=torch.channels_last), noise.contiguous(memory_format=torch.channels_last)
        fn = torch.compile(m) if comp else m
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
        ac = functools.partial(torch.autocast, device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

        def train_step(fn=fn, m=m, opt=opt, xi=xi, ni=ni, ac=ac):
            m.train()
            with ac():
                loss = F.mse_loss(fn(xi, t).float(), ni)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        def infer_step(fn=fn, m=m, xi=xi, ac=ac):
            m.eval()
            with torch.inference_mode(), ac():
                fn(xi, t)

        train[name], infer[name] = train_step, infer_step
    for mode, runners in (("train", train), ("inference", infer)):
        t_warm = time.monotonic()
        times = interleaved_times(runners, rounds=s["rounds"], steps=s["steps"], sync=lambda: sync(device),
                                  warmup=s["warmup"])
        out = {"wall_s_incl_warmup_and_compile": round(time.monotonic() - t_warm, 1), "configs": {}, "speedups": {}}
        for name, ts in times.items():
            med, lo, hi = median_spread(ts)
            out["configs"][name] = {"seconds_per_step": ts, "img_per_s": B / med, "img_per_s_min": B / hi,
                                    "img_per_s_max": B / lo,
                                    "tflops": res["flops_per_image"][mode] * B / med / 1e12}
        for name in times:
            if name != "fp32" and not name.startswith("diffusers"):
                out["speedups"][f"{name} vs fp32"] = speedup(times["fp32"], times[name])
        for ours, theirs_name in (("fp32", "diffusers_fp32"), ("bf16_cl", "diffusers_bf16_cl")):
            if theirs_name in times:
                out["speedups"][f"ddpm_lib {ours} vs {theirs_name}"] = speedup(times[theirs_name], times[ours])
        for k, v in out["speedups"].items():
            log.info("unet %s %s: %.3fx [%.3f..%.3f]%s", mode, k, v["paired"], v["min"], v["max"],
                     "  NOISY" if v["noisy"] else "")
        for k, v in out["configs"].items():
            log.info("unet %s %s: %.0f img/s, %.1f TFLOP/s", mode, k, v["img_per_s"], v["tflops"])
        res[mode] = out
        suite.results["sections"]["unet_throughput"] = res  # partial results survive a timeout
        suite.save()
    del models, train, infer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return res


# ---------------------------------------------------------------------------------------------------
# Trainer runs (sections 3-5)


def recipe_config(suite: Suite, recipe: str, run: str, **overrides):
    """``TrainConfig.from_recipe(recipe, ...)`` with the suite's run folder; in smoke mode shrunk to the
    ``tiny`` UNet, a few images, bf16 instead of fp16 (which needs CUDA)."""
    from ddpm_lib.training.config import TrainConfig

    over = dict(out_dir=str(suite.work / "runs" / run), overwrite=True, resume=False, progress=False,
                checkpoint_every=0, sample_every=0, log_every=5, tensorboard=False, seed=0)
    if not suite.smoke:
        over["num_workers"] = min(8, os.cpu_count() or 1)
    over.update(overrides)
    if suite.smoke:
        base = TrainConfig.from_recipe(recipe)
        unet = {"in_channels": 3} if base.dataset == "cifar10" else {}
        over.update(preset="tiny", unet=unet, batch_size=min(8, over.get("batch_size", 8)), max_items=64,
                    num_timesteps=50, log_every=1, num_workers=0)
        if over.get("mixed_precision") == "fp16" or (over.get("mixed_precision") is None and base.mixed_precision == "fp16"):
            over["mixed_precision"] = "bf16"
    return TrainConfig.from_recipe(recipe, **over)


def train_run(cfg) -> dict:
    """Fit ``cfg``; images/s from metrics.csv (the first logged interval, which holds warm-up and
    compilation, reported apart)."""
    import numpy as np

    from ddpm_lib.settings import seed_everything
    from ddpm_lib.training.monitor import read_metrics
    from ddpm_lib.training.trainer import Trainer

    seed_everything(cfg.seed)
    t = time.monotonic()
    trainer = Trainer(cfg)
    result = trainer.fit()
    wall = time.monotonic() - t
    m = read_metrics(cfg.out_dir)
    ips = m["img_per_s"]
    steady = ips[1:] if len(ips) > 1 else ips
    res = {"steps": int(result["step"]), "batch": cfg.batch_size, "wall_s": round(wall, 1),
           "img_per_s": float(np.median(steady)), "img_per_s_min": float(steady.min()), "img_per_s_max": float(steady.max()),
           "first_interval_img_per_s": float(ips[0]), "final_loss": float(m["loss"][-1]),
           "loss_finite": bool(np.isfinite(m["loss"]).all()), "mixed_precision": cfg.mixed_precision,
           "compile": cfg.compile, "channels_last": cfg.channels_last, "preset": cfg.preset, "unet": cfg.unet,
           "params": sum(p.numel() for p in trainer.raw_model.parameters())}
    scaler = getattr(trainer, "scaler", None)
    if scaler is not None and scaler.is_enabled():
        res["grad_scaler_scale"] = float(scaler.get_scale())
    res["_trainer"] = trainer
    return res


def trainer_paths(suite: Suite) -> dict:
    s = suite.size
    out = {}
    for name, over in (("fp16_gradscaler", {"mixed_precision": "fp16", "compile": False}),
                       ("bf16_compile", {"mixed_precision": "bf16", "compile": True})):
        cfg = recipe_config(suite, "cifar10_gpu", f"trainer-{name}", steps=s["trainer_steps"], **over)
        r = train_run(cfg)
        r.pop("_trainer")
        if not r["loss_finite"]:
            r["problem"] = "non-finite loss"
        out[name] = r
        log.info("trainer %s: %.0f img/s over %d steps (first interval %.0f img/s), final loss %.4f",
                 name, r["img_per_s"], r["steps"], r["first_interval_img_per_s"], r["final_loss"])
    return out


def recipes(suite: Suite) -> dict:
    from ddpm_lib.training.config import TrainConfig

    s = suite.size
    out = {}
    for recipe, notebook in (("fashion_mnist_gpu", "04_training"), ("cifar10_gpu", "06_cifar10")):
        full = TrainConfig.from_recipe(recipe)
        r = train_run(recipe_config(suite, recipe, f"recipe-{recipe}", steps=s["recipe_steps"]))
        r.pop("_trainer")
        r["recipe"] = {k: v for k, v in full.to_dict().items() if k not in ("out_dir", "data_root")}
        r["full_run_steps"] = full.steps
        r["full_run_train_minutes"] = full.steps * full.batch_size / r["img_per_s"] / 60 if not suite.smoke else None
        r["notebook"] = notebook
        out[recipe] = r
        log.info("recipe %s: %.0f img/s; a full run (%d steps of %d) trains in %s min", recipe, r["img_per_s"],
                 full.steps, full.batch_size, r["full_run_train_minutes"] and f"{r['full_run_train_minutes']:.1f}")
    return out


def starter(suite: Suite) -> dict:
    import torch

    s = suite.size
    over = dict(class_conditional=True, label_dropout=0.1, batch_size=s["starter_batch"], hflip=True,
                compile=False, sample_every=0, log_every=10 if not suite.smoke else 1)
    probe = train_run(recipe_config(suite, "cifar10_cpu", "starter-probe", steps=s["probe_steps"], **over))
    probe.pop("_trainer")
    # training time: its share, less if the budget is short (the evaluation and the later sections need theirs)
    left = min(s["starter_train_s"], suite.remaining() - s["later_sections_s"] - 90.0)
    steps = max(s["min_starter_steps"], int(left * probe["img_per_s"] / s["starter_batch"]))
    log.info("starter: %.0f img/s in the probe, %.0f s for training: %d steps", probe["img_per_s"], left, steps)
    warm = max(1, min(500, steps // 10))
    cfg = recipe_config(suite, "cifar10_cpu", "starter", steps=steps, warmup_steps=warm, **over)
    res = train_run(cfg)
    trainer = res.pop("_trainer")
    res["probe"] = probe
    res["train_config"] = cfg.to_dict()
    final = Path(cfg.out_dir) / "final.pt"

    # loss curve
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ddpm_lib.training.monitor import plot_metrics

    fig, ax = plt.subplots(figsize=(6, 3.5))
    plot_metrics(cfg.out_dir, ax=ax, title=f"starter CIFAR-10 model: {res['steps']} steps of {cfg.batch_size}")
    fig.tight_layout()
    fig.savefig(suite.out / "starter_loss.png", dpi=100)
    plt.close(fig)

    # grids, one row per class, at each guidance scale
    from ddpm_lib.diffusion.samplers import sample
    from ddpm_lib.viz import save_grid

    model = trainer.ema_model()
    k = s["grid_per_class"]
    labels = torch.arange(10).repeat_interleave(k).to(trainer.device)
    for w in GUIDANCE:
        x = sample(model, trainer.schedule, (len(labels), 3, 32, 32), sampler="ddim", num_steps=s["sample_steps"],
                   generator=torch.Generator().manual_seed(0), labels=labels, guidance_scale=w,
                   prediction_type=cfg.prediction_type, progress=False, device=trainer.device)
        save_grid(x.float().cpu(), suite.out / f"grid_w{w:g}.png", nrow=k)
    res["grids"] = [f"grid_w{w:g}.png" for w in GUIDANCE]

    # FID with the course's classifier features against the real test images
    from ddpm_lib.evaluation.evaluate import evaluate

    res["fid"] = {}
    for w in GUIDANCE:
        rep = evaluate(final, num=s["fid_num"], sampler="ddim", steps=s["sample_steps"], features="classifier",
                       guidance=w, batch=500 if not suite.smoke else 20, seed=0, device=str(trainer.device))
        res["fid"][f"w={w:g}"] = {"fid": rep["metrics"]["fid"], "kid": rep["metrics"]["kid"],
                                  "kid_std": rep["metrics"]["kid_std"], "num_samples": rep["num_samples"],
                                  "num_real": rep["num_real"], "sampling_s": rep["seconds"]["sampling"],
                                  "classifier": rep["extractor"]}
        log.info("starter FID (classifier features, %d samples vs %d test images) at w=%g: %.2f",
                 rep["num_samples"], rep["num_real"], w, rep["metrics"]["fid"])

    res["export"] = export(suite, final, res, cfg)
    return res


def export(suite: Suite, final: Path, res: dict, cfg) -> dict:
    """The slim checkpoint (fp16 EMA weights) and its model card into ``--out``."""
    try:
        from ddpm_lib.training.checkpoint import export_slim
    except ImportError:
        from ddpm_lib.training.checkpoint import export_slim  # older layout
    target = export_slim(final, suite.out / "cifar10.pt")
    size = target.stat().st_size
    env = suite.results["sections"].get("environment", {})
    fid = "\n".join(f"| {k} | {v['fid']:.2f} | {v['kid']:.4f} ± {v['kid_std']:.4f} | {v['num_samples']} |"
                    for k, v in res["fid"].items())
    card = f"""# ddpm_lib starter model: CIFAR-10, class-conditional

Trained by `benchmarks/gpu_suite.py` ({suite.results['mode']} mode) on {env.get('gpu') or 'a CPU'}, torch
{env.get('torch')}, {suite.results['started']}. Loaded by `ddpm_lib.loading.load_model("pretrained:cifar10")`.

- Architecture: the `cifar10_cpu` recipe's UNet (`preset={cfg.preset}`, overrides `{json.dumps(cfg.unet)}`),
  {res['params']:,} parameters, class-conditional (10 classes + the null class), epsilon prediction,
  {cfg.schedule} schedule with T = {cfg.num_timesteps}.
- Training: {res['steps']} steps of {cfg.batch_size} images ({res['steps'] * cfg.batch_size / 50000:.1f} epochs of the
  50,000 CIFAR-10 training images, JPEG copies, random horizontal flips), label dropout {cfg.label_dropout} for
  classifier-free guidance, {cfg.mixed_precision} autocast, lr {cfg.lr:g}, EMA decay {cfg.ema_decay}; {res['wall_s']:.0f} s
  at {res['img_per_s']:.0f} img/s. Final training loss {res['final_loss']:.4f}.
- File: EMA weights in float16 ({size / 2**20:.2f} MiB).

FID with the course's classifier features (not comparable to published Inception FIDs), DDIM
{suite.size['sample_steps']} steps, against the {next(iter(res['fid'].values()))['num_real']} real test images:

| guidance | FID | KID | samples |
|---|---|---|---|
{fid}

Samples: `grid_w0.png`, `grid_w1.png`, `grid_w3.png` (one row per class: airplane, automobile, bird,
cat, deer, dog, frog, horse, ship, truck).
"""
    (suite.out / "cifar10_card.md").write_text(card)
    return {"file": target.name, "bytes": size, "fits_package_limit": size <= SLIM_LIMIT_BYTES, "card": "cifar10_card.md"}


# ---------------------------------------------------------------------------------------------------
# data


def prepare_data(data: Path | None, work: Path, smoke: bool) -> tuple[Path, threading.Thread | None]:
    """The data folder for DDPM_DATA_DIR, and a thread unpacking CIFAR-10 into it (joined before use)."""
    target = work / "data"
    target.mkdir(parents=True, exist_ok=True)
    if data is None:
        if not smoke:
            raise SystemExit("gpu_suite: --data DIR is required outside --smoke (make gpu-data fills .devdata)")
        return target, None  # FAST-mode stand-ins are written there on first use
    fm = data / "FashionMNIST" / "raw"
    if fm.is_dir():
        shutil.copytree(fm, target / "FashionMNIST" / "raw", dirs_exist_ok=True)
    archive = data / "cifar10-jpeg.tar.gz"
    if (data / "cifar10").is_dir():
        (target / "cifar10").symlink_to((data / "cifar10").resolve())
        return target, None
    if not archive.is_file():
        raise SystemExit(f"gpu_suite: {data} holds neither cifar10/ nor cifar10-jpeg.tar.gz (run make gpu-data)")

    def unpack():
        t = time.monotonic()
        with tarfile.open(archive) as tf:
            if sys.version_info >= (3, 12):
                tf.extractall(target, filter="data")
            else:
                tf.extractall(target)  # noqa: S202 - our own archive
        log.info("unpacked %s in %.1f s", archive, time.monotonic() - t)

    th = threading.Thread(target=unpack, daemon=True)
    th.start()
    return target, th


# ---------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="output folder (created): JSON, log, PNGs, checkpoint")
    p.add_argument("--data", type=Path, default=None,
                   help="folder with cifar10-jpeg.tar.gz (or cifar10/) and FashionMNIST/raw (make gpu-data: .devdata)")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, about a minute: the same code paths")
    p.add_argument("--budget-s", type=float, default=None, help="wall-time budget in seconds (default 470 GPU, 90 smoke)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder for data and runs (default: a temp folder)")
    args = p.parse_args(argv)
    wanted = [x.strip() for x in args.sections.split(",") if x.strip()]
    if set(wanted) - set(SECTIONS):
        p.error(f"--sections: unknown {sorted(set(wanted) - set(SECTIONS))}; choose from {','.join(SECTIONS)}")

    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        handlers=[logging.StreamHandler(sys.stdout), logging.FileHandler(args.out / "suite.log", mode="w")],
                        force=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_suite-"))
    data_dir, unpacking = prepare_data(args.data, work, args.smoke)
    # the library reads these when ddpm_lib.settings is first imported, below
    os.environ.update(DDPM_DATA_DIR=str(data_dir), DDPM_RUNS_DIR=str(work / "runs"), DDPM_OFFLINE="1")
    if args.smoke:
        os.environ.update(DDPM_FAST="1", DDPM_DEVICE="cpu")
        os.environ.pop("DDPM_MODE", None)
    import torch

    if args.smoke:  # compile's code path, without minutes of C++ compilation on a CPU
        torch.compile = functools.partial(torch.compile, backend="eager")
    elif not torch.cuda.is_available():
        raise SystemExit("gpu_suite: no CUDA GPU found; use --smoke on a CPU")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    device = torch.device("cuda" if not args.smoke else "cpu")

    suite = Suite(args.out, args.smoke, args.budget_s, data_dir, work)
    suite.results["command"] = " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    gpu = not args.smoke
    plan = {  # section: (function, arguments, seconds of budget it needs to start)
        "environment": (environment, (suite,), 0.0),
        "starter": (starter, (suite,), 200.0 if gpu else 0.0),
        "recipes": (recipes, (suite,), 40.0 if gpu else 0.0),
        "trainer_paths": (trainer_paths, (suite,), 90.0 if gpu else 0.0),
        "unet_throughput": (unet_throughput, (suite, device), 100.0 if gpu else 0.0),
    }
    for name in SECTIONS:
        if name not in wanted:
            continue
        if name != "environment" and unpacking is not None:
            unpacking.join()
        fn, fargs, need = plan[name]
        suite.section(name, fn, *fargs, need_s=need)
    suite.results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    suite.save()
    errors = {k: v["error"] for k, v in suite.results["sections"].items() if "error" in v}
    log.info("done in %.0f s; files: %s%s", suite.elapsed(), sorted(f.name for f in args.out.iterdir()),
             f"; ERRORS: {errors}" if errors else "")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
