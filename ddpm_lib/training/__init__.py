"""Training a model (Algorithm 1) and the files a run leaves.

Read in this order:

1. ``recipes``: named, complete training setups (every training size lives here, one per dataset and mode).
2. ``config``: ``TrainConfig``, every field described once (``FIELD_HELP``), validated; ``from_recipe``.
3. ``trainer``: the ``Trainer`` loop; ``callbacks`` (progress, metrics, TensorBoard, sample grids, early
   stopping) and ``monitor`` (metrics.csv, read and plotted) observe it; ``distributed`` runs it on several GPUs.
4. ``checkpoint``: the payload schema, save/load, RNG state, resume rules, the slim export;
   ``runs``: the run folder, its lock and signals.

Rebuilding a model from a checkpoint is one layer up, in :mod:`ddpm_lib.loading`.
"""
