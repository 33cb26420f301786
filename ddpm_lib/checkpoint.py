"""Compatibility names: checkpoints are owned by :mod:`ddpm_lib.runs` (saving, loading, the payload
schema, rebuilding a model). ``from ddpm_lib.checkpoint import load_model_from_checkpoint`` keeps working."""

from ddpm_lib.runs import (  # noqa: F401
    FORMAT,
    CheckpointMismatchError,
    check_config_matches,
    config_differences,
    export_slim,
    get_rng_state,
    load_checkpoint,
    load_model_from_checkpoint,
    load_model_weights,
    model_config_dict,
    save_checkpoint,
    set_rng_state,
)
