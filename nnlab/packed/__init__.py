"""The packed wing: a sweep's same-shape jobs trained together as one vectorised model.

Each member is built exactly as its solo run builds it (same seed, same builders, so the same
init draw); the members' parameters are stacked (`torch.func.stack_module_state`) and one
`vmap`-ed `functional_call` runs every member on its own batch, in its solo run's order. Every
member logs into its own MLflow run, through the same run ceremony as a solo run.

plan (which jobs pack, how many fit) -> members (built as solo) -> module (the vectorised
LightningModule; optim, batches, instruments) -> runner (the fit and each member's run;
pictures: its end-of-run figures, drawn here and in a second process) -> checkpoint (kill and
resume) -> launch (the sweep, for hydra_plugins/nnlab_packed).
"""

from nnlab.packed.checkpoint import PackResume, pack_run_ids
from nnlab.packed.members import Member, build_members
from nnlab.packed.module import PackedModule
from nnlab.packed.plan import PACKABLE, members_that_fit, model_unpackable, pack_key, unpackable
from nnlab.packed.runner import run_pack
from nnlab.tracking.tags import PACK as PACK_TAG

__all__ = ["PACKABLE", "PACK_TAG", "Member", "PackResume", "PackedModule", "build_members",
           "members_that_fit", "model_unpackable", "pack_key", "pack_run_ids", "run_pack",
           "unpackable"]
