"""Checks that look across the fields of a run config (called by ``RunConfig.__post_init__``).

An impossible combination fails when the config is built, with one line (``ValueError``), so
that ``python -m trainers.train --dry-run`` and a search's resolve step reject it instead of a
worker minutes later.  The model-name grammar lives here (the config sits below the model
package, which imports these tables): ``DiT-{size}/{patch}`` and the ADM UNet names.
"""
from __future__ import annotations

from trainers.data.captioned import CAPTIONED_DATASETS as CAPTIONED
from trainers.routing.spec import LEARNED_KINDS
from trainers.text.encoders import ENCODERS

# name -> (depth, hidden size, heads), docs/architecture.md; "T" is a tiny CPU size for laptops and tests
DIT_SIZES = {"T": (4, 128, 4), "S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}
DIT_PATCHES = {"T": (2, 4), "S": (2, 4, 8), "B": (2, 4, 8), "L": (2, 4, 8), "XL": (2, 4, 8)}
# ADM UNet name -> resolution levels (len(channel_mult)): the input side must divide by 2^(levels-1)
ADM_LEVELS = {"ADM-ImageNet64": 4, "ADM-FFHQ64": 4, "ADM-T": 2}
SCHEDULES = ("linear", "cosine")


def dit_names() -> list[str]:
    return [f"DiT-{size}/{p}" for size in DIT_SIZES for p in DIT_PATCHES[size]]


def text_dit_names() -> list[str]:
    """Text-conditional DiTs (docs/text_conditional.md): ``DiT-{size}/{patch}-text``."""
    return [f"{name}-text" for name in dit_names()]


def model_names() -> list[str]:
    return [*dit_names(), *text_dit_names(), *ADM_LEVELS]


def check_config(cfg) -> None:
    """Raise ``ValueError`` (one line) for a combination of fields no run can train."""
    _check_model(cfg)
    _check_routing(cfg)
    _check_batches(cfg)
    _check_ant_uw(cfg)
    _check_text(cfg)
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {cfg.schedule!r}")
    if not 1 <= cfg.sample_steps <= cfg.num_timesteps:
        raise ValueError(f"sample_steps must be in [1, num_timesteps={cfg.num_timesteps}], got {cfg.sample_steps}")
    if cfg.guided_channels < 0:
        raise ValueError(f"guided_channels must be >= 0 (0 = all channels), got {cfg.guided_channels}")
    if cfg.eval_k < 0 or cfg.final_eval_samples < 0 or cfg.eval_every < 0 or cfg.ckpt_every < 0:
        raise ValueError("eval_k, final_eval_samples, eval_every and ckpt_every must be >= 0")


def _check_model(cfg) -> None:
    name = cfg.model
    if name in ADM_LEVELS:
        grid = 2 ** (ADM_LEVELS[name] - 1)
    elif name in dit_names() or name in text_dit_names():
        grid = int(name.removesuffix("-text").rpartition("/")[2])
    else:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(model_names())}")
    if cfg.image_size < 1 or cfg.image_size % grid:
        raise ValueError(f"image_size={cfg.image_size} must be a positive multiple of {grid} for {name}")


def _check_routing(cfg) -> None:
    kind = cfg.routing
    if cfg.model in ADM_LEVELS and kind in LEARNED_KINDS:
        raise ValueError(f"routing {kind!r} is implemented for DiT only; ADM supports none/dtr/random/cdtr/ercdt")
    if kind in ("cdtr", "ercdt") and cfg.routing_clusters > cfg.num_timesteps:
        raise ValueError(f"routing_clusters={cfg.routing_clusters} must be <= num_timesteps={cfg.num_timesteps} "
                         f"({kind} gives each cluster at least one timestep)")
    if kind == "ercdt" and (cfg.model in dit_names() or cfg.model in text_dit_names()):
        hidden = DIT_SIZES[cfg.model[4:].partition("/")[0]][1]
        if cfg.routing_clusters > hidden - hidden // 2:
            raise ValueError(f"routing_clusters={cfg.routing_clusters} must be <= {hidden - hidden // 2} for ercdt "
                             f"on {cfg.model} (each cluster needs its own channel segment)")
    if kind == "learned_window" and cfg.num_timesteps < 2:
        raise ValueError("routing 'learned_window' needs num_timesteps >= 2")
    if cfg.roaming_every < 1:
        raise ValueError(f"roaming_every must be >= 1 (steps between MaxRoaming's re-draws), got {cfg.roaming_every}")


def _check_text(cfg) -> None:
    """Text models train on captions (a captioned set, or a latent cache of one), and captions need a text model."""
    if cfg.text_encoder not in ENCODERS:
        raise ValueError(f"text_encoder must be one of {tuple(ENCODERS)}, got {cfg.text_encoder!r}")
    text = cfg.model in text_dit_names()
    if text and cfg.dataset not in (*CAPTIONED, "latents"):
        raise ValueError(f"{cfg.model} is text-conditional: train it on captioned data ({', '.join(CAPTIONED)}, "
                         f"or latents of one), not dataset={cfg.dataset!r}")
    if text and cfg.multi_expert_n > 1:
        raise ValueError("multi_expert_n > 1 (the multi-expert baseline) is implemented for class-conditional "
                         "models only, not for text models")
    if not text and cfg.dataset in CAPTIONED:
        hint = f"{cfg.model}-text" if cfg.model in dit_names() else "DiT-T/4-text"
        raise ValueError(f"dataset {cfg.dataset!r} holds captions: train a text model on it (e.g. {hint}), "
                         f"not {cfg.model}")


def _check_batches(cfg) -> None:
    if cfg.global_batch % cfg.micro_batch:
        raise ValueError(f"global_batch={cfg.global_batch} must be a multiple of micro_batch={cfg.micro_batch}")


def _check_ant_uw(cfg) -> None:
    """ANT-UW: K clusters inside the timesteps the model trains on (a multi-expert member's own
    interval), each with the same number of samples in every global batch (also the clusters of
    ANT's PCGrad / Nash-MTL)."""
    if cfg.weighting not in ("ant_uw", "pcgrad", "nash_mtl"):
        return
    if cfg.uw_clusters < 1:
        raise ValueError(f"uw_clusters must be >= 1, got {cfg.uw_clusters}")
    if cfg.expert_t_lo >= 0:
        span = cfg.expert_t_hi - cfg.expert_t_lo + 1
        where = f"the expert interval [{cfg.expert_t_lo}, {cfg.expert_t_hi}]"
    elif cfg.multi_expert_n > 1:
        span, where = cfg.num_timesteps // cfg.multi_expert_n, f"each of the {cfg.multi_expert_n} expert intervals"
    else:
        span, where = cfg.num_timesteps, f"num_timesteps={cfg.num_timesteps}"
    if cfg.uw_clusters > span:
        raise ValueError(f"uw_clusters={cfg.uw_clusters} must be <= the {span} timesteps of {where}")
    if cfg.weighting == "ant_uw" and cfg.uw_lr <= 0:
        raise ValueError(f"uw_lr must be > 0, got {cfg.uw_lr}")
    if cfg.uw_cluster_method == "affinity":  # the file's metadata only: its T must be the run's
        from trainers.diffusion.affinity import check_affinity_file
        check_affinity_file(cfg.uw_affinity_file, cfg.num_timesteps)
