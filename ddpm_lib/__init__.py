"""ddpm_lib."""
