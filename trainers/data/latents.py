"""VAE latents for latent-space DiT training (docs/training.md "VAE latents": sd-vae-ft-ema,
scale 0.18215, 256 px -> 32x32x4), gathered in one place:

    python -m platform.prepare latents --src /data/imagenet/train --out /data/latents/imagenet256
    train_ds = build_dataset("latents", root="/data/latents/imagenet256")   # a LatentDataset
    meta = read_latent_meta("/data/latents/imagenet256")                    # the manifest
    vae = load_vae_for_cache(meta)                                          # decode samples with it

- :mod:`trainers.data.vae`: ``load_vae``, ``vae_spec``, ``load_vae_for_cache``, ``check_vae``.
- :mod:`trainers.data.latent_cache`: the on-disk format (sharded, memory-mapped ``.npy`` files
  holding the posterior mean and std of each image and its flip, a manifest written last) and
  :class:`LatentDataset`, whose items are ``(mean + std * eps) * scale`` with the flip and ``eps``
  drawn from (seed, epoch, index).
- :mod:`trainers.data.latent_encode`: ``encode_latent_cache`` (resumable, rank r of w), also a
  torchrun entry point.
"""
from __future__ import annotations

from trainers.data.latent_cache import FORMAT, LatentDataset, read_latent_meta, verify_latent_cache
from trainers.data.latent_encode import CacheMismatch, encode_latent_cache, finalize_cache
from trainers.data.vae import TINY_VAE_CONFIG, VaeUnavailable, check_vae, load_vae, load_vae_for_cache, vae_spec

__all__ = [
           "FORMAT",
           "TINY_VAE_CONFIG",
           "CacheMismatch",
           "LatentDataset",
           "VaeUnavailable",
           "check_vae",
           "encode_latent_cache",
           "finalize_cache",
           "load_vae",
           "load_vae_for_cache",
           "read_latent_meta",
           "vae_spec",
           "verify_latent_cache",
]
