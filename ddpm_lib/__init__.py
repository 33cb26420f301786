"""ddpm_lib: the tested library behind the ddpm-course notebooks (DDPM, Ho et al. 2020, arXiv:2006.11239).

Importing ``ddpm_lib`` is cheap: it loads no submodule. Import what you need::

    from ddpm_lib.settings import settings, seed_everything
    from ddpm_lib.data import load_dataset

Modules, roughly in course order:

- ``settings``: FAST mode, data/runs folders, device, ``seed_everything`` (one place for every switch).
- ``data``: Fashion-MNIST, CIFAR-10, image folders and array files as [-1, 1] tensors; the offline error;
  ``image_datasets``: the Dataset classes behind it; ``standins``: the synthetic stand-ins FAST mode
  uses when real data is missing.
- ``viz``: show and save image grids and GIFs.
- ``schedules``: noise schedules (linear, cosine, sigmoid, quadratic) and their derived quantities.
- ``forward``: the forward process q(x_t | x_0) (eq. 4), the posterior (eqs. 6-7), eps/x0/v conversions.
- ``embeddings``, ``blocks``, ``unet``: timestep embeddings, ResBlock/attention, the UNet.
  ``diffusers_compat``: export the UNet to diffusers' UNet2DModel (tests and benchmarks check against it).
- ``losses``, ``ema``, ``checkpoint``, ``train_config``, ``trainer``, ``distributed``: training
  (Algorithm 1); ``monitor``: a run's metrics.csv, read and plotted.
- ``samplers``: DDPM ancestral sampling (Algorithm 2), DDIM, DPM-Solver++, classifier-free guidance.
- ``toy``: a Gaussian mixture with its exact optimal denoiser, to test samplers without training;
  ``empirical``: the exact denoiser of a finite training set (the training loss's optimum, which memorises).
- ``features``, ``metrics``, ``classifier``, ``evaluate``: FID, KID, Inception Score.
- ``exercises``: the checkers for the notebooks' exercises; ``student``: ``make student``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
