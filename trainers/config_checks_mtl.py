"""Config checks of ANT's PCGrad / Nash-MTL over timestep clusters (``weighting`` = ``pcgrad`` /
``nash_mtl``; trainers/training/gradient_combination.py): each unsupported combination fails when
the config is built, with one line (``ValueError``)."""
from __future__ import annotations

COMBINED = ("pcgrad", "nash_mtl")  # = gradient_combination.COMBINED_WEIGHTINGS (kept import-free here)


def check_gradient_combination(cfg) -> None:
    """Raise ``ValueError`` (one line) for a PCGrad / Nash-MTL config the trainer cannot run."""
    if cfg.weighting not in COMBINED:
        return
    if cfg.uw_clusters < 2:
        raise ValueError(f"{cfg.weighting} combines the gradients of uw_clusters >= 2 timestep clusters, "
                         f"got uw_clusters={cfg.uw_clusters}")
    if cfg.zero_stage not in (0, 1):
        raise ValueError(f"{cfg.weighting} supports zero_stage 0 or 1 (it needs every parameter's whole "
                         f"gradient per cluster), got zero_stage={cfg.zero_stage}")
    if cfg.micro_batch != cfg.global_batch:
        raise ValueError(f"{cfg.weighting} combines the clusters' gradients over the whole global batch: set "
                         f"micro_batch = global_batch (one process, no accumulation), got micro_batch="
                         f"{cfg.micro_batch}, global_batch={cfg.global_batch}")
