"""nnlab's submitit launchers: `hydra/launcher=submitit_local|submitit_slurm` (conf/hydra/launcher).

Hydra instantiates launchers only from the `hydra_plugins` namespace, so they live here."""
