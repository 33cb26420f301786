"""The mathematics of diffusion, free of networks and data (Ho et al. 2020, arXiv:2006.11239).

Read in this order:

1. ``forward``: the forward process q(x_t | x_0) (eqs. 2, 4), the posterior (eqs. 6-7), and the
   eps / x0 / v conversions; it names the schedule tables it reads (``ScheduleTables``).
2. ``schedules``: linear, cosine, sigmoid and quadratic schedules and their derived tables (``NoiseSchedule``).
3. ``bound``: the variational bound (eqs. 3-5), its Gaussian KL terms and eq. 12's weights: why the simple
   loss is the right one.
4. ``losses``: the simple loss (eq. 14) and its variants, label dropout for guidance.
5. ``samplers``: ancestral sampling (Algorithm 2), DDIM, DPM-Solver++, EDM's Heun sampler, classifier-free guidance.
6. ``toy`` and ``empirical``: exact denoisers (a Gaussian mixture; a finite training set) to test samplers
   and losses without training.
7. ``edm`` and ``flow_matching`` (notebook 08): the score from eps, Karras et al.'s sigma parameterisation
   and noise levels (used by ``samplers.EDMSampler``, EDM's Heun sampler); flow matching's path, loss and
   Euler sampler.

Imports only the utilities below it (``ddpm_lib.progress``).
"""
