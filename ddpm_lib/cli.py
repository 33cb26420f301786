"""Command line: ``python -m ddpm_lib train | sample | evaluate``.

    python -m ddpm_lib train --recipe fashion_mnist_cpu --out runs/fmnist [--any-trainconfig-field value ...] [--resume]
    python -m ddpm_lib train --preset fashion_mnist --dataset fashion_mnist --out runs/fmnist \\
        --steps 20000 --checkpoint-every 1000 [--any-trainconfig-field value ...] [--resume]
    python -m ddpm_lib sample --ckpt runs/fmnist/final.pt --num 64 --sampler ddim --steps 50 \\
        --out grid.png [--out-dir pngs/] [--class 3] [--guidance 2.0] [--seed 0] [--overwrite]
    torchrun --nproc_per_node 4 -m ddpm_lib train ...        # several GPUs (see ddpm_lib.training.distributed)

Every :class:`~ddpm_lib.training.config.TrainConfig` field is an option (``--batch-size 64`` or
``--batch_size 64``; ``--unet '{"dropout": 0.0}'`` for a dict; ``none`` for an optional value; a bare
``--resume`` means true). Data come from ``DDPM_DATA_DIR``. Bad arguments print ONE line and exit
with status 2 (so does an output path that holds something the command did not write: a checkpoint, a
notebook, a folder that is not a run; ``--overwrite`` allows it, see :func:`ddpm_lib.files.check_output_file`);
a non-finite loss or a full disk exit with status 1 (one line naming the last good
checkpoint); Ctrl-C (SIGINT) or SIGTERM save ``latest.pt`` at the current step and exit with 130 / 143.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
from pathlib import Path

import torch
from PIL import Image

from ddpm_lib.command_line import (
    CLIError,
    OneLineParser,
    add_sampling_options,
    check_device,
    check_sample_memory,
    fail,
    finite_float,
    run_guarded,
)
from ddpm_lib.diffusion.samplers import SAMPLER_NAMES, sample_batched
from ddpm_lib.evaluation import evaluate
from ddpm_lib.files import NoSpaceError, check_output_dir, check_output_file, is_png
from ddpm_lib.loading import load_model
from ddpm_lib.settings import seed_everything
from ddpm_lib.training import distributed as dist_utils
from ddpm_lib.training.config import FIELD_HELP, START_ACTIONS, TrainConfig, parse_field_value
from ddpm_lib.training.recipes import get_recipe, recipes_table
from ddpm_lib.training.runs import RunFolder
from ddpm_lib.training.trainer import NonFiniteLossError, Trainer, TrainingInterrupted
from ddpm_lib.viz import save_grid, to_uint8

PROG = "python -m ddpm_lib"

# ---------------------------------------------------------------------------------------------------
# train


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train a diffusion model", description="Train a diffusion model "
                              "(every TrainConfig field is an option; --recipe NAME starts from a named recipe).",
                              epilog="recipes (--recipe NAME; any option still overrides):\n" + recipes_table(),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", dest="_recipe", default=None, metavar="NAME",
                   help="start from this named recipe (listed below); options and --config override its fields")
    types_ = TrainConfig.field_types()
    for f in dataclasses.fields(TrainConfig):
        names = [f"--{f.name.replace('_', '-')}"]
        if "_" in f.name:
            names.append(f"--{f.name}")
        if f.name == "out_dir":
            names.insert(0, "--out")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        tp = types_[f.name]
        is_bool = tp is bool
        p.add_argument(*names, dest=f.name, default=argparse.SUPPRESS, metavar="BOOL" if is_bool else "VALUE",
                       nargs="?" if is_bool else None, const="true" if is_bool else None,
                       help=FIELD_HELP[f.name] if "(default:" in FIELD_HELP[f.name] else f"{FIELD_HELP[f.name]} (default: {default!r})")
    p.add_argument("--config", dest="_config", default=None, metavar="JSON",
                   help="a JSON file of TrainConfig fields (e.g. a run's config.json); options override it")
    p.set_defaults(func=run_train)
    return p


def build_train_config(args: argparse.Namespace):
    values = {}
    if getattr(args, "_recipe", None):
        try:
            values.update(get_recipe(args._recipe).train)
        except ValueError as e:
            raise CLIError(f"--recipe: {e}") from None
    if getattr(args, "_config", None):
        path = Path(args._config)
        if not path.is_file():
            raise CLIError(f"--config: no such file {path}")
        try:
            loaded = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CLIError(f"--config: {path} is not valid JSON ({e})") from None
        if not isinstance(loaded, dict):
            raise CLIError(f"--config: {path} holds a JSON {type(loaded).__name__}, not an object of TrainConfig fields "
                           "(e.g. a run's config.json)")
        for key in START_ACTIONS:  # how an earlier command started, not the run's settings: never repeated
            if loaded.pop(key, False) is True:
                print(f"--config: ignoring \"{key}\": true stored in {path} (pass --{key} yourself if you mean it)")
        values.update(loaded)
    for name in (f.name for f in dataclasses.fields(TrainConfig)):
        if hasattr(args, name):
            try:
                values[name] = parse_field_value(name, getattr(args, name))
            except ValueError as e:
                raise CLIError(str(e)) from None
    try:
        return TrainConfig.from_dict(values, strict=True)
    except (ValueError, TypeError) as e:
        raise CLIError(str(e)) from None


def run_train(args: argparse.Namespace) -> int:
    cfg = build_train_config(args)
    if cfg.device is not None:
        check_device(cfg.device, "--device")
    seed_everything(cfg.seed + 100_003 * int(os.environ.get("RANK", "0")))  # each process its own noise
    try:
        trainer = Trainer(cfg)
    except (ValueError, FileNotFoundError) as e:  # includes DatasetNotFoundError, CheckpointMismatchError
        raise CLIError(str(e)) from None
    except KeyboardInterrupt:  # Ctrl-C while the data load and the model is built: nothing was written yet
        return fail(f"{PROG} train: interrupted (Ctrl-C) while starting; nothing was written to {cfg.out_dir or 'the run folder'}.", 130)
    try:
        result = trainer.fit()
    except (ValueError, FileNotFoundError) as e:  # RunError (resume refused, folder locked), data errors
        raise CLIError(str(e)) from None
    except NonFiniteLossError as e:
        return fail(f"{PROG} train: error: {e}", 1)
    except NoSpaceError as e:
        return fail(f"{PROG} train: error: {e}", 1)
    except TrainingInterrupted as e:
        return fail(f"{PROG} train: stopped by {e.signal_name} at step {e.step}; saved {e.checkpoint}; continue "
                     f"with the same command and --resume", 130 if e.signal_name == "SIGINT" else 143)
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        good = RunFolder(trainer.config.out_dir).last_good_checkpoint()
        kept = f"the last good checkpoint is {good} (continue with --resume)" if good else "no checkpoint was saved"
        return fail(f"{PROG} train: interrupted at step {trainer.step} without saving; {kept}", 130)
    finally:
        dist_utils.cleanup(trainer.dist)
    if trainer.dist.is_main:
        print(f"done: {result['step']} steps ({result['stopped']}) in {result['seconds'] / 60:.1f} min, smoothed loss "
              f"{result['smoothed_loss']:.4f}; "
              f"checkpoints and metrics.csv in {trainer.run.path}")
    return 0


# ---------------------------------------------------------------------------------------------------
# sample


def add_sample_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("sample", help="draw samples from a checkpoint",
                              description="Draw samples from a trained checkpoint and save a PNG grid.")
    add_sampling_options(p, SAMPLER_NAMES, num=64, batch=256)
    p.add_argument("--eta", type=finite_float, default=0.0, help="DDIM eta (0: deterministic)")
    p.add_argument("--out", default="samples.png", help="grid PNG to write (default samples.png)")
    p.add_argument("--out-dir", default=None, help="also write every image as its own PNG into this folder")
    p.add_argument("--nrow", type=int, default=None, help="images per grid row (default: square)")
    p.add_argument("--class", dest="class_label", type=int, default=None,
                   help="class label for a class-conditional model (default: all classes in turn)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an --out file that is not a PNG, or write into an --out-dir holding other files")
    p.set_defaults(func=run_sample)
    return p


def run_sample(args: argparse.Namespace) -> int:
    for name in ("num", "batch"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.steps < 0 or (args.steps == 0 and args.sampler != "ddpm"):
        raise CLIError(f"--steps must be >= 1 (0 means all T steps, only with --sampler ddpm), got {args.steps}")
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    if args.nrow is not None and args.nrow < 1:
        raise CLIError(f"--nrow must be >= 1, got {args.nrow}")
    if args.device is not None:
        check_device(args.device)
    out = check_output_file(args.out, option="--out", kind="a PNG grid", is_own=is_png, overwrite=args.overwrite)
    out_dir = None
    if args.out_dir is not None:
        out_dir = check_output_dir(args.out_dir, option="--out-dir", kind="the PNG files of an earlier sample --out-dir",
                                   is_own=lambda d: _holds_only_sample_pngs(d, out), overwrite=args.overwrite)
        for p in (out_dir.iterdir() if out_dir.is_dir() else ()):  # even with --overwrite: never a file that is not a PNG
            if re.fullmatch(r"\d{5,}\.png", p.name) and int(p.stem) < args.num:
                check_output_file(p, option="--out-dir", kind="a PNG", is_own=is_png)
    try:
        model, schedule, cfg, _ = load_model(args.ckpt, use_ema=not args.no_ema, device=args.device)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        raise CLIError(str(e)) from None
    null = getattr(model, "null_class", None)
    if args.class_label is not None:
        if null is None:
            raise CLIError("--class: this model is unconditional (trained without labels)")
        if not 0 <= args.class_label < null:
            raise CLIError(f"--class must lie in 0..{null - 1}, got {args.class_label}")
    if args.guidance is not None and null is None:
        raise CLIError("--guidance: this model is unconditional, classifier-free guidance needs a class-conditional one")
    labels = None
    if null is not None:
        labels = torch.full((args.num,), args.class_label) if args.class_label is not None else torch.arange(args.num) % null
    c, s = model.config.in_channels, model.config.image_size
    check_sample_memory(args.num, (c, s, s))
    x = sample_batched(model, schedule, args.num, (c, s, s), batch_size=args.batch, labels=labels,
                       generator=torch.Generator().manual_seed(args.seed), sampler=args.sampler,
                       num_steps=None if args.steps == 0 else args.steps, eta=args.eta,
                       guidance_scale=1.0 if args.guidance is None else args.guidance,
                       prediction_type=cfg.prediction_type, progress=True)
    nrow = args.nrow or int(math.ceil(math.sqrt(args.num)))
    path = save_grid(x, out, nrow=nrow)
    print(f"wrote {args.num} samples to {path}")
    if out_dir is not None:
        d = out_dir
        d.mkdir(parents=True, exist_ok=True)
        u8 = to_uint8(x).permute(0, 2, 3, 1).numpy()
        for i, im in enumerate(u8):
            Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(d / f"{i:05d}.png")
        print(f"and {len(u8)} PNG files to {d}")
    return 0


def _holds_only_sample_pngs(folder: Path, grid: Path) -> bool:
    """True when ``folder`` holds only what ``sample`` writes there: ``00000.png``-style PNGs (and the --out grid)."""
    return all(p.is_file() and is_png(p) and (re.fullmatch(r"\d{5,}\.png", p.name) or p.resolve() == grid.resolve())
               for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------------
# entry point


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="ddpm_lib: train and sample diffusion models.")
    sub = parser.add_subparsers(dest="command", metavar="{train,sample,evaluate}", parser_class=OneLineParser)
    sub.required = True
    add_train_parser(sub)
    add_sample_parser(sub)
    evaluate.add_parser(sub)  # the evaluation module owns its options
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; user errors print one line (naming the option or file and the fix), exit 2."""
    args = build_parser().parse_args(argv)
    return run_guarded(f"{PROG} {args.command}", args)
