"""A Gaussian-mixture world where the optimal denoiser is known exactly: samplers with no training.

If the data are drawn from a Gaussian mixture p_0(x) = sum_k w_k N(x; mu_k, Sigma_k), the forward
process q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) (Ho et al. 2020, eq. 4) turns it into another
Gaussian mixture (a Gaussian pushed through a linear map plus independent Gaussian noise stays Gaussian):

    p_t(x) = sum_k w_k N(x; sqrt(abar_t) mu_k, abar_t Sigma_k + (1 - abar_t) I).

The network trained with the simple loss (eq. 14) approximates E[eps | x_t] and, by Tweedie's formula
(E[x_0 | x_t] = (x_t + (1 - abar_t) grad log p_t(x_t)) / sqrt(abar_t); Efron 2011, Song et al. 2021
"Score-based generative modeling through SDEs", eq. 7 / Vincent 2011),

    eps*(x_t, t) = E[eps | x_t] = -sqrt(1 - abar_t) grad_x log p_t(x_t),

and for a mixture the score is a responsibility-weighted sum of the components' scores:

    grad log p_t(x) = sum_k r_k(x) C_k^{-1} (m_k - x),   r_k(x) = w_k N(x; m_k, C_k) / p_t(x),
    m_k = sqrt(abar_t) mu_k,  C_k = abar_t Sigma_k + (1 - abar_t) I.

With Sigma_k = U_k diag(lam_k) U_k^T, C_k = U_k diag(abar lam_k + 1 - abar) U_k^T, so each timestep needs
only the eigendecomposition computed once. All of it runs in float64.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ddpm_lib.diffusion.edm import alpha_bar_from_sigma, eps_from_score, timestep_to_sigma
from ddpm_lib.diffusion.schedules import NoiseSchedule


def _as64(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


class GaussianMixture:
    """A mixture of K Gaussians in D dimensions: ``weights`` (K,), ``means`` (K, D), ``covs`` (K, D, D).

    Weights are normalised to sum to 1; each covariance must be symmetric positive definite.
    """

    def __init__(self, weights, means, covs):
        w, mu, cov = _as64(weights), _as64(means), _as64(covs)
        if w.ndim != 1 or w.numel() < 1:
            raise ValueError(f"weights must be a 1-D sequence of K >= 1 numbers, got shape {tuple(w.shape)}.")
        K = w.numel()
        if mu.ndim != 2 or mu.shape[0] != K:
            raise ValueError(f"means must have shape (K, D) = ({K}, D), got {tuple(mu.shape)}.")
        D = mu.shape[1]
        if cov.shape != (K, D, D):
            raise ValueError(f"covs must have shape (K, D, D) = ({K}, {D}, {D}), got {tuple(cov.shape)}.")
        if not torch.all(w > 0):
            raise ValueError(f"weights must all be > 0, got {w.tolist()}.")
        if not torch.allclose(cov, cov.transpose(1, 2), atol=1e-10):
            raise ValueError("covs must be symmetric matrices.")
        evals, evecs = torch.linalg.eigh(cov)
        if not torch.all(evals > 0):
            raise ValueError("covs must be positive definite (every eigenvalue > 0).")
        self.weights = w / w.sum()
        self.means = mu
        self.covs = cov
        self.eigvals = evals  # (K, D)
        self.eigvecs = evecs  # (K, D, D), columns are eigenvectors
        self.num_components, self.dim = K, D

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.num_components}, D={self.dim})"

    def mean(self) -> torch.Tensor:
        """The mixture's overall mean sum_k w_k mu_k."""
        return (self.weights[:, None] * self.means).sum(0)

    def covariance(self) -> torch.Tensor:
        """The mixture's overall covariance sum_k w_k (Sigma_k + mu_k mu_k^T) - m m^T."""
        m = self.mean()
        second = (self.weights[:, None, None] * (self.covs + self.means[:, :, None] * self.means[:, None, :])).sum(0)
        return second - m[:, None] * m[None, :]

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` draws: (x float32 (n, D), component index LongTensor (n,))."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}.")
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        chol = torch.linalg.cholesky(self.covs)  # (K, D, D)
        x = self.means[comp] + (chol[comp] @ z[:, :, None])[:, :, 0]
        return x.float(), comp

    # --- densities at noise level alpha_bar (alpha_bar = 1: the data distribution itself) ---------

    def _terms(self, x: torch.Tensor, alpha_bar: torch.Tensor):
        """Per-sample, per-component pieces: log(w_k N(x; m_k, C_k)) (B, K) and C_k^{-1}(x - m_k) (B, K, D)."""
        ab = alpha_bar.to(torch.float64).reshape(-1, 1)  # (B, 1)
        if ab.shape[0] > 1 and bool((ab == ab[0]).all()):  # one noise level for the whole batch (sampling)
            ab = ab[:1]
        log_comps, prec_diffs = [], []
        for k in range(self.num_components):  # a loop over K of (B, D) matmuls: fast for small D
            U = self.eigvecs[k]
            lam = ab * self.eigvals[k] + (1.0 - ab)  # (B or 1, D): eigenvalues of C_k
            proj = (x - ab.sqrt() * self.means[k]) @ U  # U_k^T (x - m_k), as rows
            maha = (proj**2 / lam).sum(-1)
            logdet = lam.log().sum(-1)
            log_comps.append(self.weights[k].log() - 0.5 * (maha + logdet + self.dim * math.log(2 * math.pi)))
            prec_diffs.append((proj / lam) @ U.T)  # C_k^{-1} (x - m_k)
        return torch.stack(log_comps, 1), torch.stack(prec_diffs, 1)

    def _prep(self, x, alpha_bar):
        x = _as64(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}.")
        ab = _as64(alpha_bar).to(x.device)
        if ab.ndim == 0:
            ab = ab.expand(x.shape[0])
        return x, ab

    def log_prob(self, x, alpha_bar=1.0) -> torch.Tensor:
        """log p_t(x) (float64, (B,)) of the mixture noised to level ``alpha_bar`` (a number or (B,))."""
        x, ab = self._prep(x, alpha_bar)
        log_comp, _ = self._terms(x, ab)
        return torch.logsumexp(log_comp, dim=1)

    def score(self, x, alpha_bar=1.0) -> torch.Tensor:
        """grad_x log p_t(x) (float64, (B, D)) of the mixture noised to level ``alpha_bar``."""
        x, ab = self._prep(x, alpha_bar)
        log_comp, prec_diff = self._terms(x, ab)
        resp = torch.softmax(log_comp, dim=1)  # r_k(x)
        return -(resp[:, :, None] * prec_diff).sum(1)

    def component_score(self, x, k: torch.Tensor, alpha_bar=1.0) -> torch.Tensor:
        """grad_x log N(x; m_k, C_k) for each sample's own component k (B,)."""
        x, ab = self._prep(x, alpha_bar)
        _, prec_diff = self._terms(x, ab)
        return -prec_diff[torch.arange(x.shape[0]), k.to(torch.long)]

    def to(self, device) -> GaussianMixture:
        gm = GaussianMixture.__new__(GaussianMixture)
        gm.__dict__.update({k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()})
        return gm


def three_blobs() -> GaussianMixture:
    """The course's 2-D mixture: 3 well-separated (about 7 standard deviations apart), differently shaped and
    weighted components that sit inside [-1, 1]^2 like image pixels do."""
    return GaussianMixture(
        weights=[0.5, 0.3, 0.2],
        means=[[-0.6, -0.35], [0.6, -0.35], [0.0, 0.6]],
        covs=[
            [[0.030, 0.010], [0.010, 0.020]],
            [[0.020, -0.010], [-0.010, 0.030]],
            [[0.030, 0.0], [0.0, 0.015]],
        ],
    )


def component_statistics(x: torch.Tensor, mixture: GaussianMixture) -> dict[str, torch.Tensor]:
    """Assign each sample to its most likely component under the mixture and return, in float64,
    ``weights`` (K,), ``means`` (K, D), ``covs`` (K, D, D) and ``counts`` (K,) of the assigned samples
    (NaN for a component that got fewer than 2 samples)."""
    x = _as64(x).reshape(x.shape[0], -1)
    log_comp, _ = mixture._terms(x, torch.ones(x.shape[0], dtype=torch.float64))
    comp = log_comp.argmax(1)
    K, D = mixture.num_components, mixture.dim
    means = torch.full((K, D), float("nan"), dtype=torch.float64)
    covs = torch.full((K, D, D), float("nan"), dtype=torch.float64)
    counts = torch.bincount(comp, minlength=K)
    for k in range(K):
        if counts[k] >= 2:
            xk = x[comp == k]
            means[k] = xk.mean(0)
            covs[k] = torch.cov(xk.T).reshape(D, D)
    return {"weights": counts.double() / x.shape[0], "means": means, "covs": covs, "counts": counts}


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Energy distance between two samples (Szekely & Rizzo 2013): 2 E|X-Y| - E|X-X'| - E|Y-Y'| >= 0,
    zero only when the distributions agree. O(n^2) memory: meant for a few thousand 2-D points."""
    x, y = _as64(x).reshape(x.shape[0], -1), _as64(y).reshape(y.shape[0], -1)
    xy = torch.cdist(x, y).mean()
    xx = torch.cdist(x, x).sum() / (x.shape[0] * (x.shape[0] - 1))
    yy = torch.cdist(y, y).sum() / (y.shape[0] * (y.shape[0] - 1))
    return float(2 * xy - xx - yy)


class GaussianMixtureDenoiser(nn.Module):
    """The exact optimal epsilon-predictor for data from ``mixture`` under ``schedule``:

        eps*(x_t, t) = -sqrt(1 - abar_t) grad log p_t(x_t)       (Tweedie; see the module docstring)

    Called like the course's networks, ``denoiser(x_t, t, labels=None)`` with t a LongTensor (B,) (or an
    int; a float tensor is a fractional timestep, whose sigma is :func:`ddpm_lib.diffusion.edm.timestep_to_sigma`) and x_t of shape (B, D) or any (B, ...) with prod(...) = D; returns eps of x_t's shape and dtype.

    With ``conditional=True`` a label k in 0..K-1 selects component k (the exact class-conditional
    denoiser of p_0(x | k) = N(mu_k, Sigma_k)), and ``null_class = K`` means "unconditional", so the
    classifier-free-guidance code path can be exercised exactly. Otherwise ``null_class`` is None and
    labels are ignored.
    """

    def __init__(self, mixture: GaussianMixture, schedule: NoiseSchedule, conditional: bool = False):
        super().__init__()
        if not isinstance(mixture, GaussianMixture):
            raise ValueError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}.")
        if not isinstance(schedule, NoiseSchedule):
            raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}.")
        self.mixture = mixture
        self.conditional = bool(conditional)
        self.null_class = mixture.num_components if conditional else None
        self.register_buffer("alpha_bars", schedule.alpha_bars.detach().to(torch.float64).cpu().clone())
        self.schedule = schedule

    def forward(self, x_t: torch.Tensor, t, labels=None) -> torch.Tensor:
        B = x_t.shape[0]
        x = x_t.reshape(B, -1)
        if x.shape[1] != self.mixture.dim:
            raise ValueError(f"x_t holds {x.shape[1]} numbers per sample but the mixture is {self.mixture.dim}-D.")
        if not isinstance(t, torch.Tensor):
            t = torch.full((B,), t, dtype=torch.float64 if isinstance(t, float) else torch.long)
        t = t.cpu().expand(B) if t.ndim == 0 else t.cpu()
        if t.is_floating_point():  # a fractional timestep (EDM's sampler): its sigma, interpolated in log sigma
            ab = alpha_bar_from_sigma(torch.from_numpy(timestep_to_sigma(t.double().numpy(), self.schedule)))
        else:
            ab = self.alpha_bars.cpu()[t]
        mix = self.mixture
        x64 = x.detach().cpu().to(torch.float64)
        score = mix.score(x64, ab)
        if self.conditional and labels is not None:
            labels = torch.as_tensor(labels, dtype=torch.long).cpu().expand(B)
            if labels.min() < 0 or labels.max() > self.null_class:
                raise ValueError(f"labels must lie in 0..{self.null_class} (K = {self.null_class} is the null label).")
            cond = labels != self.null_class
            if cond.any():
                score[cond] = mix.component_score(x64[cond], labels[cond], ab[cond])
        eps = eps_from_score(score, ab[:, None])
        return eps.to(device=x_t.device, dtype=x_t.dtype).reshape(x_t.shape)
