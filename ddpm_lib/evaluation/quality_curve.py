"""Quality against training time: FID probes during a run, so a student sees what each minute of training buys.

    from ddpm_lib.evaluation.quality_curve import QualityCurve
    curve = QualityCurve("fashion_mnist", num=256, steps=20)
    Trainer(cfg, callbacks=[curve]).fit()
    curve.points   # [{"step", "minutes", "fid", "kid", "kid_std"}, ...]; curve.floor: the same metrics for real images

At given fractions of the run (``at``; by steps, or by the clock for a run with a time budget, see
:meth:`ddpm_lib.training.trainer.Trainer.planned_steps`) and at its end, the EMA model draws ``num`` DDIM samples
with a fixed generator (the same noise at every probe) and their classifier features are compared with the real
test images' (FID: Heusel et al. 2017; KID: Binkowski et al. 2018; :mod:`ddpm_lib.evaluation.metrics`). With a
few hundred samples FID is biased upward (notebook 07), so the curve comes with its floor: the same metrics for
``num`` real training images. The time a probe takes is left out of the run's clock
(:meth:`~ddpm_lib.training.trainer.Trainer.exclude_time`): the curve's minutes and the time budget are training.
The points are kept in ``<run>/quality_curve.json`` after every probe, so a resumed (or reused, finished) run
carries its curve on.
"""

from __future__ import annotations

import json
import time

import torch

from ddpm_lib.data.sources import load_dataset
from ddpm_lib.diffusion.samplers import sample_batched
from ddpm_lib.evaluation.classifier import get_classifier
from ddpm_lib.evaluation.evaluate import metrics_from_features
from ddpm_lib.evaluation.features import compute_features
from ddpm_lib.files import atomic_write
from ddpm_lib.training.callbacks import Callback
from ddpm_lib.training.trainer import Trainer


class QualityCurve(Callback):
    """FID / KID of ``num`` EMA samples (DDIM, ``steps`` steps) at the fractions ``at`` of the run and at its end."""

    FILE = "quality_curve.json"

    def __init__(self, dataset: str, num: int = 256, steps: int = 20, at=(0.125, 0.25, 0.5, 0.75),
                 classifier=None, data_root=None, max_real: int | None = None, seed: int = 0):
        if num < 2:
            raise ValueError(f"QualityCurve needs num >= 2 samples for a covariance, got {num}.")
        if any(not 0 < a <= 1 for a in at):
            raise ValueError(f"QualityCurve fractions must lie in (0, 1], got {at}.")
        self.dataset, self.num, self.steps, self.at = dataset, num, steps, sorted(at)
        self.classifier, self.data_root, self.max_real, self.seed = classifier, data_root, max_real, seed
        self.points: list[dict] = []
        self.floor: dict | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        t0 = time.perf_counter()
        self.extractor = get_classifier(self.dataset, path=self.classifier, device=trainer.device, train_if_missing=False)
        size = trainer.data_shape[-1]
        real = load_dataset(self.dataset, train=False, root=self.data_root, max_items=self.max_real, image_size=size)
        train = load_dataset(self.dataset, train=True, root=self.data_root, max_items=self.num, image_size=size)
        self.real_features = self._features(real, trainer)
        self.floor = {**metrics_from_features(self._features(train, trainer), self.real_features, seed=self.seed),
                      "num": len(train), "num_real": len(real)}
        self._next = 0
        saved = trainer.run.path / self.FILE
        if trainer.step > 0 and saved.is_file():  # a resumed run: its earlier points, up to the step it resumed at
            earlier = json.loads(saved.read_text())
            if (earlier.get("num"), earlier.get("steps")) == (self.num, self.steps):
                self.points = [p for p in earlier["points"] if p["step"] <= trainer.step]
                fraction = trainer.step / trainer.planned_steps(trainer.step)
                while self._next < len(self.at) and fraction >= self.at[self._next]:
                    self._next += 1
        trainer.exclude_time(time.perf_counter() - t0)

    def on_step_end(self, trainer: Trainer, loss: float) -> None:
        fraction = trainer.step / trainer.planned_steps(trainer.step)
        if self._next < len(self.at) and fraction >= self.at[self._next]:
            while self._next < len(self.at) and fraction >= self.at[self._next]:
                self._next += 1
            self.probe(trainer)

    def on_fit_end(self, trainer: Trainer) -> None:
        if trainer.step and (not self.points or self.points[-1]["step"] != trainer.step):
            self.probe(trainer)

    def probe(self, trainer: Trainer) -> dict:
        """Measure the EMA model now; appends to and returns ``points[-1]``."""
        t0 = time.perf_counter()
        minutes = trainer.seconds_spent() / 60
        model = trainer.ema_model()
        null = getattr(model, "null_class", None)
        labels = torch.arange(self.num) % null if null is not None else None
        with torch.random.fork_rng(devices=[trainer.device] if trainer.device.type == "cuda" else []):
            fake = sample_batched(model, trainer.schedule, self.num, trainer.data_shape, batch_size=256, labels=labels,
                                  generator=torch.Generator().manual_seed(self.seed), sampler="ddim",
                                  num_steps=self.steps, prediction_type=trainer.config.prediction_type,
                                  device=trainer.device)
        m = metrics_from_features(self._features(fake, trainer), self.real_features, seed=self.seed)
        point = {"step": trainer.step, "minutes": minutes, "fid": m["fid"], "kid": m["kid"], "kid_std": m["kid_std"]}
        self.points.append(point)
        if trainer.dist.is_main:
            atomic_write(trainer.run.path / self.FILE, json.dumps(
                {"num": self.num, "steps": self.steps, "floor": self.floor, "points": self.points}, indent=1))
        trainer.exclude_time(time.perf_counter() - t0)
        return point

    def _features(self, images, trainer: Trainer) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            images = torch.utils.data.DataLoader(images, batch_size=256)
        return compute_features(self.extractor.features, images, 256, trainer.device)
