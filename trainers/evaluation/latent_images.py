"""Latent runs are scored on images: their samples are decoded with the VAE that built the
run's latent cache, and compared with the images the cache was built from.

    decode, vae_name = latent_decoder(cfg, device)   # latents (N, 4, h, w) -> images in [-1, 1]
    dataset, root, size = reference_source(cfg)      # where the real side of FID comes from
"""
from __future__ import annotations

import os

import torch

from trainers.config import RunConfig

DECODE_BATCH = 32
_VAES: dict = {}


def _cache_meta(cfg: RunConfig) -> dict:
    from trainers.data.latents import read_latent_meta
    if not cfg.data_root:
        raise ValueError("a latent run needs data_root=<latent cache> to find its VAE and its source images")
    return read_latent_meta(cfg.data_root)


def latent_decoder(cfg: RunConfig, device) -> tuple:
    """``(decode, vae_name)``: ``decode(latents)`` -> float images (N, 3, H, W) in [-1, 1]."""
    from trainers.data.latents import load_vae_for_cache
    meta = _cache_meta(cfg)
    key = (cfg.data_root, str(device))
    if key not in _VAES:
        _VAES[key] = load_vae_for_cache(meta).to(device).eval()
    vae, scale = _VAES[key], float(meta["scale"])

    @torch.no_grad()
    def decode(latents: torch.Tensor) -> torch.Tensor:
        out = [vae.decode(z.to(device, vae.dtype) / scale).sample.float().cpu()
               for z in latents.split(DECODE_BATCH)]
        return torch.cat(out).clamp(-1, 1) if out else torch.zeros((0, 3, 1, 1))
    return decode, str(meta["vae"]["name"])


def reference_source(cfg: RunConfig) -> tuple[str, str | None, int]:
    """``(dataset, root, image_size)`` of the real images FID compares with: the run's own data
    set for pixel runs, the cache's source image folder for latent runs, or ``fid_reference``'s
    images (an ADM-suite reference batch .npz, dataset name ``adm_npz``)."""
    if cfg.fid_reference:
        import numpy as np
        if not os.path.isfile(cfg.fid_reference):
            raise FileNotFoundError(f"fid_reference {cfg.fid_reference!r} does not exist")
        with np.load(cfg.fid_reference, mmap_mode="r") as z:
            if "arr_0" not in z.files or z["arr_0"].ndim != 4:
                raise ValueError(f"{cfg.fid_reference}: not an ADM reference batch (no arr_0 of shape (N, H, W, 3))")
            size = int(z["arr_0"].shape[1])
        return "adm_npz", os.path.abspath(cfg.fid_reference), size
    if cfg.dataset != "latents":
        return cfg.dataset, cfg.data_root or None, cfg.image_size
    meta = _cache_meta(cfg)
    source = meta.get("source") or {}
    if not source.get("root"):
        raise ValueError(f"the latent cache {cfg.data_root} does not name its source images (manifest 'source'); "
                         "FID needs them as the reference")
    return str(source["dataset"]), str(source["root"]), int(meta["image_size"])
