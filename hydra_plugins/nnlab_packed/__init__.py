"""nnlab's Hydra launcher plugin: `hydra/launcher=packed` (see packed_launcher.py)."""
