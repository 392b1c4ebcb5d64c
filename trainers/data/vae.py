"""The VAE behind latent-space training: load it, describe it in a cache manifest, load it back.

    vae = load_vae("stabilityai/sd-vae-ft-ema")   # a Hub id, or a local AutoencoderKL folder
    vae = load_vae(offline_tiny=True, seed=0)     # a randomly initialised tiny VAE (offline tests)
    spec = vae_spec(vae)                          # JSON-able: what a latent cache's manifest records
    vae = load_vae_for_cache(meta)                # that VAE again, from read_latent_meta(root)

``check_vae(name)`` fails fast (``VaeUnavailable``) without loading any weights.
"""
from __future__ import annotations

import os

import torch

DEFAULT_VAE = "stabilityai/sd-vae-ft-ema"
TINY_VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, sample_size=32, layers_per_block=1,
    block_out_channels=(32, 64, 64), norm_num_groups=32,
    down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
)


class VaeUnavailable(RuntimeError):
    """The requested VAE weights cannot be loaded."""


def _unavailable(name: str, error: Exception) -> VaeUnavailable:
    return VaeUnavailable(
        f"cannot load the VAE {name!r} ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
        "Without internet, pass a local folder saved with AutoencoderKL.save_pretrained, or use "
        "load_vae(offline_tiny=True) / --tiny-vae for a randomly initialised test VAE.")


def _load_kwargs(name_or_path: str) -> dict:
    return {"subfolder": "vae"} if os.path.isdir(os.path.join(name_or_path, "vae")) else {}


def check_vae(name_or_path: str) -> None:
    """Raise :class:`VaeUnavailable` unless the VAE's config can be read (a local folder or the Hub)."""
    from diffusers import AutoencoderKL
    try:
        config = AutoencoderKL.load_config(name_or_path, **_load_kwargs(name_or_path))
    except Exception as e:
        raise _unavailable(name_or_path, e) from e
    if config.get("_class_name") not in (None, "AutoencoderKL"):
        raise VaeUnavailable(f"{name_or_path!r} is a {config.get('_class_name')}, not an AutoencoderKL")


def load_vae(name_or_path: str = DEFAULT_VAE, *, offline_tiny: bool = False, seed: int = 0):
    """A frozen, eval-mode diffusers ``AutoencoderKL``.

    ``offline_tiny=True`` builds a randomly initialised small VAE (downsampling 4x, 4 latent
    channels, seeded without touching the global RNG) so the latent path can be tested offline.
    A local folder may be an AutoencoderKL folder or a Stable Diffusion folder with ``vae/``.
    """
    from diffusers import AutoencoderKL
    if offline_tiny:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            vae = AutoencoderKL(**TINY_VAE_CONFIG)
        vae._dtr_spec = {"name": f"tiny-random-vae(seed={int(seed)})", "offline_tiny": True, "seed": int(seed)}
    else:
        name = os.path.abspath(name_or_path) if os.path.isdir(name_or_path) else str(name_or_path)
        try:
            vae = AutoencoderKL.from_pretrained(name, **_load_kwargs(name))
        except Exception as e:
            raise _unavailable(str(name_or_path), e) from e
        vae._dtr_spec = {"name": name, "offline_tiny": False, "seed": None}
    return vae.eval().requires_grad_(False)


def vae_spec(vae) -> dict:
    """What a manifest records about ``vae``: name (Hub id or absolute folder), offline_tiny, seed,
    latent_channels, downsample (image side / latent side) and the VAE config's scaling_factor."""
    spec = dict(getattr(vae, "_dtr_spec", None) or
                {"name": vae.config.get("_name_or_path", "") or type(vae).__name__, "offline_tiny": False, "seed": None})
    spec["latent_channels"] = int(vae.config.latent_channels)
    spec["downsample"] = 2 ** (len(vae.config.block_out_channels) - 1)
    spec["scaling_factor"] = float(vae.config.get("scaling_factor", 0.18215))
    return spec


def load_vae_for_cache(meta: dict, *, name_or_path: str | None = None):
    """The VAE a latent cache was built with, from its manifest (``read_latent_meta(root)``).

    ``name_or_path`` overrides where the weights come from (e.g. the cache was built from a Hub id
    and this machine has a local copy); the tiny random VAE is rebuilt from its seed.
    """
    spec = meta["vae"]
    if spec.get("offline_tiny"):
        return load_vae(offline_tiny=True, seed=int(spec.get("seed") or 0))
    return load_vae(name_or_path or spec["name"])
