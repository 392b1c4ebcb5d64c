"""VAE latent caching for latent-space DiT training (docs/training.md: sd-vae-ft-ema, scale 0.18215).

    vae = load_vae("stabilityai/sd-vae-ft-ema")          # offline tests: load_vae(offline_tiny=True)
    ds = build_dataset("imagenet_folder", root=..., image_size=256, random_flip=False)
    encode_to_latent_cache(ds, vae, "latents/imagenet256.npz", device="cuda")
    train_ds = build_dataset("latents", root="latents/imagenet256.npz")

Each image is encoded once as ``posterior.mean * scale`` (deterministic). With ``flip_both`` the
horizontally flipped image is encoded too (as fast-DiT does: flipping a latent is not the same as
encoding a flipped image), and :class:`LatentDataset` picks one of the two per (seed, epoch, index).

File format: one uncompressed .npz with ``latents`` float32 (N, F, C, h, w) (F = 2 with flips,
else 1), ``labels`` int64 (N,) and ``meta`` (a JSON string). The whole cache is held in memory
(ImageNet-256 with flips: about 21 GB), a known limit of the single-file format.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from trainers.data.base import CorruptDataError, EpochFlipMixin
from trainers.files import atomic_path

FORMAT = "dtr-latents/1"
TINY_VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, sample_size=32, layers_per_block=1,
    block_out_channels=(32, 64, 64), norm_num_groups=32,
    down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
)


class VaeUnavailable(RuntimeError):
    """The requested VAE weights cannot be loaded."""


def load_vae(name_or_path: str = "stabilityai/sd-vae-ft-ema", *, offline_tiny: bool = False, seed: int = 0):
    """A frozen, eval-mode diffusers ``AutoencoderKL``.

    ``offline_tiny=True`` builds a randomly initialised small VAE (downsampling 4x, 4 latent
    channels, seeded without touching the global RNG) so the latent path can be tested offline.
    """
    from diffusers import AutoencoderKL
    if offline_tiny:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            vae = AutoencoderKL(**TINY_VAE_CONFIG)
        vae._dtr_name = f"tiny-random-vae(seed={seed})"
    else:
        kwargs = {}
        if os.path.isdir(os.path.join(name_or_path, "vae")):  # a full Stable Diffusion folder
            kwargs["subfolder"] = "vae"
        try:
            vae = AutoencoderKL.from_pretrained(name_or_path, **kwargs)
        except Exception as e:
            raise VaeUnavailable(
                f"cannot load the VAE {name_or_path!r} ({type(e).__name__}: {e}). Without internet, pass a "
                "local folder saved with AutoencoderKL.save_pretrained, or use load_vae(offline_tiny=True) "
                "for a randomly initialised test VAE.") from e
        vae._dtr_name = str(name_or_path)
    return vae.eval().requires_grad_(False)


def _vae_name(vae) -> str:
    return getattr(vae, "_dtr_name", None) or vae.config.get("_name_or_path", "") or type(vae).__name__


@torch.no_grad()
def encode_to_latent_cache(dataset: Dataset, vae, out_path: str, *, batch_size: int = 32,
                           scale: float = 0.18215, device: str = "cpu", flip_both: bool = True,
                           num_workers: int = 0, overwrite: bool = False) -> str:
    """Encode every item of ``dataset`` once and write the cache to ``out_path``; returns the path.

    An existing ``out_path`` is kept as is (no re-encoding) unless ``overwrite``. The data set's
    own random flip is switched off while encoding; grey images are repeated to 3 channels.
    """
    from tqdm.auto import tqdm
    out_path = os.fspath(out_path)
    n = len(dataset)
    if os.path.exists(out_path) and not overwrite:
        old = read_latent_meta(out_path)
        want = {"scale": float(scale), "vae": _vae_name(vae), "flip_both": bool(flip_both), "num_items": n}
        diff = {k: (old.get(k), v) for k, v in want.items() if old.get(k) != v}
        if diff:
            raise ValueError(f"{out_path} exists but was built differently (cached, requested): {diff}; "
                             "pass overwrite=True or choose another path")
        return out_path
    if n == 0:
        raise ValueError("cannot build a latent cache from an empty data set")
    vae = vae.to(device).eval()
    chain, d = [], dataset  # the data set and those it wraps (Subset.dataset, ...)
    while d is not None:
        chain.append(d)
        d = getattr(d, "dataset", None)
    owners = [(d, d.random_flip) for d in chain if hasattr(d, "random_flip")]
    for d, _ in owners:
        d.random_flip = False
    latents = labels = None
    image_size, start = 0, 0
    try:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        for x, y in tqdm(loader, desc=f"encoding {os.path.basename(out_path)}", unit="batch"):
            x = x.to(device=device, dtype=vae.dtype)
            if x.shape[1] == 1 and vae.config.in_channels == 3:
                x = x.expand(-1, 3, -1, -1)
            image_size, b = x.shape[-1], x.shape[0]
            xx = torch.cat([x, x.flip(-1)]) if flip_both else x
            z = (vae.encode(xx).latent_dist.mean * scale).float().cpu().numpy()
            z = z.reshape(-1, b, *z.shape[1:]).swapaxes(0, 1)  # (b, F, C, h, w)
            if latents is None:
                latents = np.empty((n, *z.shape[1:]), dtype=np.float32)
                labels = np.empty(n, dtype=np.int64)
            latents[start:start + b], labels[start:start + b] = z, y.reshape(-1).numpy()
            start += b
    finally:
        for d, flip in owners:
            d.random_flip = flip
    num_classes = next((int(d.num_classes) for d in chain if hasattr(d, "num_classes")), int(labels.max()) + 1)
    meta = {
        "format": FORMAT, "scale": float(scale), "vae": _vae_name(vae), "posterior": "mean",
        "image_size": int(image_size), "latent_shape": list(latents.shape[2:]), "flip_both": bool(flip_both),
        "num_items": n, "num_classes": num_classes,
        "dataset": next((str(d.name) for d in chain if hasattr(d, "name")), type(dataset).__name__),
    }
    with atomic_path(out_path, fsync=True) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, latents=latents, labels=labels, meta=np.array(json.dumps(meta)))
    return out_path


def read_latent_meta(path: str) -> dict:
    """The metadata dict of a latent cache, without loading the latents."""
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
    except FileNotFoundError:
        raise
    except Exception as e:
        raise CorruptDataError(f"{path}: not a latent cache written by encode_to_latent_cache "
                               f"({type(e).__name__}: {e})") from e
    if meta.get("format") != FORMAT:
        raise CorruptDataError(f"{path}: latent cache format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


class LatentDataset(EpochFlipMixin, Dataset):
    """Items ``(latent float32 (C, h, w), y int64)`` from a cache; flipped copy chosen per (seed, epoch, index)."""

    def __init__(self, path: str, *, random_flip: bool = True, seed: int = 0):
        self.path, self.seed = os.fspath(path), int(seed)
        self.meta = read_latent_meta(self.path)
        with np.load(self.path, allow_pickle=False) as f:
            self.latents, self.labels = f["latents"], f["labels"]
        if self.latents.ndim != 5 or len(self.latents) != len(self.labels):
            raise CorruptDataError(f"{self.path}: latents {self.latents.shape} / labels {self.labels.shape} "
                                   "do not match (expected (N, F, C, h, w) and (N,))")
        self.random_flip = bool(random_flip) and self.latents.shape[1] == 2
        self.name, self.channels = "latents", int(self.latents.shape[2])
        self.num_classes, self.scale = int(self.meta["num_classes"]), float(self.meta["scale"])

    def __len__(self) -> int:
        return len(self.latents)

    def __getitem__(self, index: int):
        z = self.latents[index, 1 if self.is_flipped(index) else 0]
        return torch.from_numpy(np.array(z, dtype=np.float32)), torch.tensor(int(self.labels[index]))
