"""Command line: ``python -m ddpm_lib train | sample | evaluate``.

    python -m ddpm_lib train --recipe fashion_mnist_cpu --out runs/fmnist [--any-trainconfig-field value ...] [--resume]
    python -m ddpm_lib train --preset fashion_mnist --dataset fashion_mnist --out runs/fmnist \\
        --steps 20000 --checkpoint-every 1000 [--any-trainconfig-field value ...] [--resume]
    python -m ddpm_lib sample --ckpt runs/fmnist/final.pt --num 64 --sampler ddim --steps 50 \\
        --out grid.png [--out-dir pngs/] [--class 3] [--guidance 2.0] [--seed 0]
    torchrun --nproc_per_node 4 -m ddpm_lib train ...        # several GPUs (see ddpm_lib.distributed)

Every :class:`~ddpm_lib.train_config.TrainConfig` field is an option (``--batch-size 64`` or
``--batch_size 64``; ``--unet '{"dropout": 0.0}'`` for a dict; ``none`` for an optional value; a bare
``--resume`` means true). Data come from ``DDPM_DATA_DIR``. Bad arguments print ONE line and exit
with status 2; a non-finite loss exits with status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

PROG = "python -m ddpm_lib"

_HELP = {
    "dataset": "fashion_mnist, cifar10, folder or npy",
    "data_root": "data folder (default DDPM_DATA_DIR), or the image folder / .npy file",
    "preset": "UNet preset: tiny, fashion_mnist, cifar10_ddpm",
    "unet": "JSON dict of UNetConfig overrides, e.g. '{\"dropout\": 0.0}'",
    "out_dir": "run folder (metrics.csv, latest.pt, best.pt, final.pt, samples/)",
    "steps": "optimizer steps",
    "batch_size": "images per optimizer step (all GPUs and accumulation steps together)",
    "mixed_precision": "no, bf16 or fp16 (CUDA)",
    "resume": "continue from out_dir/latest.pt",
    "checkpoint_every": "steps between latest.pt/best.pt saves (0: only at the end)",
    "sample_every": "steps between EMA sample grids in out_dir/samples (0: never)",
}


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (no usage block, no traceback)."""

    def error(self, message):  # noqa: D401 - argparse API
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


# ---------------------------------------------------------------------------------------------------
# train


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    from ddpm_lib.recipes import recipes_table
    from ddpm_lib.train_config import TrainConfig

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
                       help=f"{_HELP.get(f.name, '')} (default: {default!r})".strip())
    p.add_argument("--config", dest="_config", default=None, metavar="JSON",
                   help="a JSON file of TrainConfig fields (e.g. a run's config.json); options override it")
    p.set_defaults(func=run_train)
    return p


def build_train_config(args: argparse.Namespace):
    import json

    from ddpm_lib.train_config import TrainConfig, parse_field_value

    values = {}
    if getattr(args, "_recipe", None):
        from ddpm_lib.recipes import get_recipe

        try:
            values.update(get_recipe(args._recipe).train)
        except ValueError as e:
            raise CLIError(f"--recipe: {e}") from None
    if getattr(args, "_config", None):
        path = Path(args._config)
        if not path.is_file():
            raise CLIError(f"--config: no such file {path}")
        try:
            values.update(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise CLIError(f"--config: {path} is not valid JSON ({e})") from None
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
    from ddpm_lib import distributed as dist_utils
    from ddpm_lib.trainer import NonFiniteLossError, Trainer

    cfg = build_train_config(args)
    try:
        trainer = Trainer(cfg)
    except (ValueError, FileNotFoundError) as e:  # includes DatasetNotFoundError, CheckpointMismatchError
        raise CLIError(str(e)) from None
    try:
        result = trainer.fit()
    except NonFiniteLossError as e:
        sys.stderr.write(f"{PROG} train: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG} train: interrupted at step {trainer.step}; continue with --resume "
                         f"(from {trainer.run_dir / 'latest.pt'})\n")
        return 130
    finally:
        dist_utils.cleanup(trainer.dist)
    if trainer.dist.is_main:
        print(f"done: {result['step']} steps ({result['stopped']}), smoothed loss {result['smoothed_loss']:.4f}; "
              f"checkpoints and metrics.csv in {trainer.run_dir}")
    return 0


# ---------------------------------------------------------------------------------------------------
# sample


def add_sample_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("sample", help="draw samples from a checkpoint",
                              description="Draw samples from a trained checkpoint and save a PNG grid.")
    p.add_argument("--ckpt", required=True,
                   help="checkpoint file (final.pt, best.pt, latest.pt), or pretrained:fashion_mnist / pretrained:cifar10")
    p.add_argument("--num", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--sampler", default="ddim", choices=["ddpm", "ddim", "dpm++"], help="default ddim")
    p.add_argument("--steps", type=int, default=50, help="sampling steps (default 50; ddpm: 0 = all T)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0: deterministic)")
    p.add_argument("--out", default="samples.png", help="grid PNG to write (default samples.png)")
    p.add_argument("--out-dir", default=None, help="also write every image as its own PNG into this folder")
    p.add_argument("--nrow", type=int, default=None, help="images per grid row (default: square)")
    p.add_argument("--class", dest="class_label", type=int, default=None,
                   help="class label for a class-conditional model (default: all classes in turn)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=256, help="images per sampling batch")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: the best available)")
    p.set_defaults(func=run_sample)
    return p


def run_sample(args: argparse.Namespace) -> int:
    import math

    import torch

    from ddpm_lib.checkpoint import load_model_from_checkpoint
    from ddpm_lib.samplers import sample
    from ddpm_lib.viz import save_grid, to_uint8

    for name in ("num", "batch"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.steps < 0 or (args.steps == 0 and args.sampler != "ddpm"):
        raise CLIError(f"--steps must be >= 1 (0 means all T steps, only with --sampler ddpm), got {args.steps}")
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    try:
        model, schedule, cfg = load_model_from_checkpoint(args.ckpt, use_ema=not args.no_ema, device=args.device)
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
    steps = None if args.steps == 0 else args.steps
    gen = torch.Generator().manual_seed(args.seed)
    c, s = model.config.in_channels, model.config.image_size
    device = next(model.parameters()).device
    out = []
    for start in range(0, args.num, args.batch):
        n = min(args.batch, args.num - start)
        labels = None
        if null is not None:
            labels = (torch.full((n,), args.class_label) if args.class_label is not None
                      else torch.arange(start, start + n) % null).to(device)
        x = sample(model, schedule, (n, c, s, s), sampler=args.sampler, num_steps=steps, eta=args.eta, generator=gen,
                   labels=labels, guidance_scale=1.0 if args.guidance is None else args.guidance,
                   prediction_type=cfg.prediction_type, progress=True, device=device)
        out.append(x.float().cpu())
    x = torch.cat(out)
    nrow = args.nrow or int(math.ceil(math.sqrt(args.num)))
    path = save_grid(x, args.out, nrow=nrow)
    print(f"wrote {args.num} samples to {path}")
    if args.out_dir:
        from PIL import Image

        d = Path(args.out_dir)
        d.mkdir(parents=True, exist_ok=True)
        u8 = to_uint8(x).permute(0, 2, 3, 1).numpy()
        for i, im in enumerate(u8):
            Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(d / f"{i:05d}.png")
        print(f"and {len(u8)} PNG files to {d}")
    return 0


# ---------------------------------------------------------------------------------------------------
# entry point


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="ddpm_lib: train and sample diffusion models.")
    sub = parser.add_subparsers(dest="command", metavar="{train,sample,evaluate}", parser_class=OneLineParser)
    sub.required = True
    add_train_parser(sub)
    add_sample_parser(sub)
    # --- evaluate: registered by ddpm_lib.evaluate (the evaluation module owns its options) ---------
    try:
        from ddpm_lib import evaluate as _evaluate
    except ImportError:
        _evaluate = None
    if _evaluate is not None and hasattr(_evaluate, "add_parser"):
        _evaluate.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except CLIError as e:
        msg = " ".join(str(e).split())  # one line
        sys.stderr.write(f"{PROG} {args.command}: error: {msg}\n")
        return 2
    except (FileNotFoundError, ValueError) as e:  # e.g. from evaluate: still one line
        msg = " ".join(str(e).split())
        sys.stderr.write(f"{PROG} {args.command}: error: {type(e).__name__}: {msg}\n")
        return 2
    return rc if isinstance(rc, int) else 0
