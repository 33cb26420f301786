"""An exponential moving average (EMA) of a model's weights, used for sampling.

Ho et al. 2020 (sec. 4 and appendix B) sample from an EMA of the weights with decay 0.9999; the
average is much smoother than the raw weights, whose last steps are noisy. After each optimizer step::

    shadow <- d * shadow + (1 - d) * weights

With a fixed d = 0.9999 the first ~10,000 updates are dominated by the random initial weights, so by
default the decay warms up as ``d_n = min(decay, (1 + n) / (10 + n))`` after n previous updates - the
``num_updates`` rule of TensorFlow's ``tf.train.ExponentialMovingAverage``. (``warmup=False`` uses
``decay`` from the first update.) Buffers (e.g. normalisation statistics) are copied, not averaged.

Usage::

    ema = EMA(model, decay=0.9999)
    ...; optimizer.step(); ema.update(model)
    with ema.swap_into(model):   # temporarily sample with the averaged weights
        samples = sample(model, ...)
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from ddpm_lib.diffusion.losses import unwrap_model


def ema_decay_at(num_updates: int, decay: float, warmup: bool = True) -> float:
    """The decay used for the update after ``num_updates`` previous updates: min(decay, (1+n)/(10+n))."""
    if not warmup:
        return decay
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates))


class EMA:
    """Shadow copy of a model's floating-point parameters, averaged exponentially (see module doc).

    Args:
        model: the model to track (its current weights start the average).
        decay: the target decay in [0, 1); 0.9999 in Ho et al.
        warmup: use the ``min(decay, (1 + n) / (10 + n))`` warm-up.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = True):
        if not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must lie in [0, 1), e.g. 0.9999; got {decay!r}.")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        model = unwrap_model(model)
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().clone().float() if p.is_floating_point() else p.detach().clone()
            for name, p in model.state_dict().items()
        }
        self._param_names = {name for name, _ in model.named_parameters()}

    def current_decay(self) -> float:
        """The decay the next :meth:`update` will use."""
        return ema_decay_at(self.num_updates, self.decay, self.warmup)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """shadow <- d * shadow + (1 - d) * weights for parameters; buffers are copied."""
        d = self.current_decay()
        for name, value in unwrap_model(model).state_dict().items():
            s = self.shadow[name]
            if name in self._param_names and s.is_floating_point():
                s.lerp_(value.detach().to(s.device, s.dtype), 1.0 - d)  # s + (1-d)(v - s)
            else:
                s.copy_(value.detach())
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s weights with the averaged ones."""
        target = unwrap_model(model)
        state = target.state_dict()
        for name, value in state.items():
            value.copy_(self.shadow[name].to(value.device, value.dtype))

    def averaged_model(self, model: nn.Module) -> nn.Module:
        """A deep copy of ``model`` holding the averaged weights (``model`` itself is left unchanged)."""
        m = copy.deepcopy(unwrap_model(model))
        self.copy_to(m)
        return m

    @contextlib.contextmanager
    def swap_into(self, model: nn.Module):
        """Temporarily put the averaged weights into ``model``; the raw weights come back on exit."""
        target = unwrap_model(model)
        backup = {k: v.detach().clone() for k, v in target.state_dict().items()}
        self.copy_to(target)
        try:
            yield target
        finally:
            with torch.no_grad():
                for name, value in target.state_dict().items():
                    value.copy_(backup[name])

    def to(self, device) -> EMA:
        self.shadow = {k: v.to(device) for k, v in self.shadow.items()}
        return self

    def state_dict(self) -> dict:
        """Plain dict (tensors, numbers): loadable with ``torch.load(..., weights_only=True)``."""
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "num_updates": self.num_updates,
            "shadow": {k: v.clone() for k, v in self.shadow.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) - set(state["shadow"])
        unexpected = set(state["shadow"]) - set(self.shadow)
        if missing or unexpected:
            raise ValueError(
                f"EMA state does not match this model: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}."
            )
        self.decay = float(state["decay"])
        self.warmup = bool(state["warmup"])
        self.num_updates = int(state["num_updates"])
        for k, v in state["shadow"].items():
            self.shadow[k] = v.to(self.shadow[k].device, self.shadow[k].dtype).clone()
