"""Respaced DDPM / DDIM samplers with classifier-free guidance.

The respaced process keeps a subset of the original timesteps and recomputes betas from
the kept alphas_cumprod.  The model is always called with the ORIGINAL (1000-grid)
timesteps, because a routed model indexes its mask table with them.

CFG: cond and uncond (null class = ``model.num_classes``) run in one doubled batch and
``eps = eps_u + s * (eps_c - eps_u)`` on the guided channels.  ``guided_channels=None``
guides every channel (the DTR / Switch-DiT choice); ``guided_channels=3`` reproduces the
DiT / ANT leftover of guiding only the first 3 of 4 latent channels (the remaining eps
channels and the learned-variance channels are taken from the conditional half).
"""
from __future__ import annotations

import torch

from trainers.diffusion.gaussian import GaussianDiffusion
from trainers.precision import autocast

__all__ = ["space_timesteps", "SpacedDiffusion", "respace", "combine_cfg",
           "guided_output", "PerSampleNoise", "sample"]


def space_timesteps(T: int, steps) -> list[int]:
    """Sorted original timesteps kept when respacing T steps (ADM's section counts).

    ``steps`` is an int or a comma-separated string of per-section counts ("250",
    "10,15,20"); within a section the kept indices are evenly spaced with both ends
    included, so steps == T is the identity and T=1000, steps=250 gives 0, 4, ..., 999.
    """
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    counts = [int(c) for c in steps.split(",")] if isinstance(steps, str) else [int(steps)]
    size, extra = divmod(T, len(counts))
    kept, start = set(), 0
    for i, count in enumerate(counts):
        section = size + (1 if i < extra else 0)
        if not 1 <= count <= section:
            raise ValueError(f"steps: cannot take {count} steps from a section of {section}")
        stride = (section - 1) / (count - 1) if count > 1 else 1.0
        kept.update(start + round(j * stride) for j in range(count))
        start += section
    return sorted(kept)


class SpacedDiffusion(GaussianDiffusion):
    """A diffusion over a subset of a base diffusion's timesteps.

    ``timestep_map[i]`` is the original timestep of respaced index i.
    """

    def __init__(self, base: GaussianDiffusion, use_timesteps):
        use = sorted(set(int(u) for u in use_timesteps))
        if not use or use[0] < 0 or use[-1] >= base.num_timesteps:
            raise ValueError("use_timesteps must be non-empty and inside 0..T-1")
        kept = base.alphas_cumprod[use]
        prev = torch.cat([torch.ones(1, dtype=torch.float64), kept[:-1]])
        self._setup(1.0 - kept / prev, base.learn_sigma)
        self.schedule = base.schedule
        base_map = getattr(base, "timestep_map", torch.arange(base.num_timesteps))
        self.timestep_map = base_map[torch.tensor(use, dtype=torch.long)]
        self.base_num_timesteps = getattr(base, "base_num_timesteps", base.num_timesteps)

    def original_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """Map respaced indices (N,) to original-grid timesteps on t's device."""
        return self.timestep_map.to(t.device)[t]


def respace(diffusion: GaussianDiffusion, steps) -> SpacedDiffusion:
    """Respace ``diffusion`` to ``steps`` (see :func:`space_timesteps`)."""
    return SpacedDiffusion(diffusion, space_timesteps(diffusion.num_timesteps, steps))


def combine_cfg(out_cond, out_uncond, scale: float, in_channels: int,
                guided_channels: int | None = None) -> torch.Tensor:
    """Guided output: eps_u + s (eps_c - eps_u) on the first ``guided_channels`` eps
    channels (all when None); every other channel comes from ``out_cond``."""
    g = in_channels if guided_channels is None else int(guided_channels)
    if not 1 <= g <= in_channels:
        raise ValueError(f"guided_channels must be in 1..{in_channels}, got {guided_channels}")
    guided = out_uncond[:, :g] + scale * (out_cond[:, :g] - out_uncond[:, :g])
    return torch.cat([guided, out_cond[:, g:]], dim=1)


def _cfg_active(model, y, cfg_scale: float) -> bool:
    return y is not None and cfg_scale != 1.0 and getattr(model, "num_classes", 1) > 1


def guided_output(model, x, t, y=None, cfg_scale: float = 1.0,
                  guided_channels: int | None = None) -> torch.Tensor:
    """Model output with classifier-free guidance (one doubled batch); ``t`` is on the
    original grid.  No doubling for cfg_scale == 1, y None, or an unconditional model."""
    if not _cfg_active(model, y, cfg_scale):
        return model(x, t, y)
    null = torch.full_like(y, model.num_classes)
    out = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
    out_c, out_u = out.chunk(2, dim=0)
    return combine_cfg(out_c, out_u, cfg_scale, x.shape[1], guided_channels)


class BatchNoise:
    """All of a batch's noise from one generator: a sample depends on its place in the batch."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def __call__(self, shape, device) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.generator.device).to(device)


class PerSampleNoise:
    """One CPU generator per sample, seeded by the caller: sample i draws the same noise (and so
    is the same image) whatever batch, rank or world size it is drawn in."""

    def __init__(self, seeds):
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def __call__(self, shape, device) -> torch.Tensor:
        if shape[0] != len(self.generators):
            raise ValueError(f"PerSampleNoise holds {len(self.generators)} seeds, asked for a batch of {shape[0]}")
        return torch.stack([torch.randn(tuple(shape[1:]), generator=g) for g in self.generators]).to(device)


@torch.no_grad()
def sample(model, diffusion: GaussianDiffusion, shape, *, steps=250, method: str = "ddpm",
           y=None, cfg_scale: float = 1.0, guided_channels: int | None = None,
           eta: float = 0.0, clip_denoised: bool = False,
           generator: torch.Generator | None = None, noise=None, progress: bool = False,
           precision: str = "fp32") -> torch.Tensor:
    """Draw x0 samples of ``shape`` (N, C, H, W).

    ``method="ddpm"``: ancestral sampling with the learned variance (fixed-large
    sigma^2 = beta_t when the diffusion has no learned sigma, as DDPM).  ``"ddim"``:
    DDIM with ``eta`` (eta = 0 is deterministic given the generator's seed).
    ``steps`` respaces the diffusion (``None`` keeps it as is).  ``clip_denoised``
    clamps the x0 prediction to [-1, 1]: False for DiT latents, pass True for pixels.
    All noise comes from ``noise`` (a callable ``(shape, device) -> tensor`` such as
    :class:`PerSampleNoise`) or else from ``generator`` (a fresh randomly seeded CPU one when None).
    The model is put in eval mode for the call (label dropout off) and restored after.
    ``precision`` is a resolved run precision (trainers/precision.py): "amp-bf16" runs the model
    under bf16 autocast; the sampler's own arithmetic stays in float32.
    """
    if method not in ("ddpm", "ddim"):
        raise ValueError(f"method must be 'ddpm' or 'ddim', got {method!r}")
    if diffusion.learn_sigma != bool(getattr(model, "learn_sigma", diffusion.learn_sigma)):
        raise ValueError("model.learn_sigma and diffusion.learn_sigma disagree")
    sp = diffusion if steps is None else respace(diffusion, steps)
    tmap = getattr(sp, "timestep_map", torch.arange(sp.num_timesteps))
    try:
        device = next(model.parameters()).device
    except (StopIteration, AttributeError):
        device = torch.device("cpu")
    if noise is None:
        if generator is None:
            generator = torch.Generator()
            generator.seed()
        noise = BatchNoise(generator)
    if y is not None:
        y = torch.as_tensor(y, dtype=torch.long, device=device)
    n = shape[0]
    x = noise(shape, device)
    indices = range(sp.num_timesteps - 1, -1, -1)
    if progress:
        from tqdm.auto import tqdm
        indices = tqdm(indices, desc=f"{method} sampling")
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        for i in indices:
            t = torch.full((n,), i, dtype=torch.long, device=device)
            with autocast(precision, device.type):
                out = guided_output(model, x, tmap.to(device)[t], y, cfg_scale, guided_channels)
            out = out.float()
            if method == "ddpm":
                x = sp.p_sample_step(out, x, t, noise(shape, device), clip_denoised)
            else:
                eps = noise(shape, device) if eta > 0 else None
                x = sp.ddim_step(out, x, t, eps, eta, clip_denoised)
    finally:
        if was_training:
            model.train()
    return x
