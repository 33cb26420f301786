"""The networks: what predicts the noise.

Read in this order: ``embeddings`` (sinusoidal timestep embeddings), ``blocks`` (ResBlock, attention,
up/down sampling), ``unet`` (the UNet and its presets), ``ema`` (the exponential moving average of the
weights), ``diffusers_compat`` (export to diffusers' UNet2DModel, which the tests use as an oracle).

Imports nothing from ddpm_lib outside this package.
"""
