"""The sharded latent cache on disk, and :class:`LatentDataset`, which trains on it.

A cache is a directory (built by :mod:`trainers.data.latent_encode`, driven by
``python -m platform.prepare latents``)::

    <cache>/plan.json          settings + shard plan, written first; a rerun must match it
    <cache>/mean-00000.npy     float32|float16 (n, F, C, h, w): posterior mean (unscaled), F = 2 with flip_both
    <cache>/std-00000.npy      same shape: posterior std = exp(0.5 * logvar)
    <cache>/labels-00000.npy   int64 (n,)
    <cache>/done-00000.json    the shard's record (item range, count, sha256 + bytes per file)
    <cache>/manifest.json      written last: the plan + "shards" (the records); complete iff present

F index 0 is the image, 1 its horizontal flip (each encoded, as fast-DiT does). Shards are
opened with ``np.load(mmap_mode="r")`` on first use in each process (many workers share the
page cache). An item is ``z = (mean + std * eps) * scale`` (``latent_dist.sample()`` of the
encoder, scaled), with the flip and ``eps`` pure functions of (seed, epoch, index): a resumed
run reads exactly the latents an uninterrupted one would.
"""
from __future__ import annotations

import bisect
import json
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from trainers.data.base import CorruptDataError, EpochFlipMixin
from trainers.files import file_sha256

FORMAT = "dtr-latents/2"
MANIFEST, PLAN = "manifest.json", "plan.json"
ARRAYS = ("mean", "std", "labels")
EPS_STREAM = 0x6C617465  # keeps the posterior noise independent of other (seed, epoch, index) streams


def shard_file(kind: str, index: int) -> str:
    """``mean-00000.npy`` / ``std-...`` / ``labels-...`` / ``done-00000.json``."""
    return f"{kind}-{index:05d}.json" if kind == "done" else f"{kind}-{index:05d}.npy"


def read_json(path: str) -> dict | None:
    """The JSON object in ``path``; None if the file is missing or not valid JSON (a torn write)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def shard_ok(root: str, record: dict | None, *, checksums: bool = True) -> bool:
    """True when every file of the shard ``record`` exists with the recorded size (and sha256)."""
    if not record or "files" not in record:
        return False
    for entry in record["files"].values():
        path = os.path.join(root, entry["name"])
        if not os.path.isfile(path) or os.path.getsize(path) != entry["bytes"]:
            return False
        if checksums and file_sha256(path) != entry["sha256"]:
            return False
    return True


def read_latent_meta(root: str) -> dict:
    """The manifest of the complete latent cache in directory ``root`` (no array is read).

    Keys: format, vae {name, offline_tiny, seed, latent_channels, downsample, scaling_factor},
    scale, image_size, latent_shape [C, h, w], flip_both, dtype, num_items, num_classes, classes,
    source {dataset, root, num_items, files_sha256}, shard_size, num_shards, posterior,
    shards [{index, start, stop, count, files {mean|std|labels: {name, sha256, bytes}}}].
    """
    root = os.fspath(root)
    if os.path.isfile(root):
        raise CorruptDataError(f"{root}: a file, not a latent cache directory (the single-.npz format "
                               "dtr-latents/1 is gone); rebuild it with `python -m platform.prepare latents`")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"latent cache {root} does not exist; build it with `python -m platform.prepare latents`")
    path = os.path.join(root, MANIFEST)
    if not os.path.exists(path):
        raise CorruptDataError(f"{root}: incomplete latent cache (no {MANIFEST}); rerun the same "
                               "`python -m platform.prepare latents` command to finish it")
    meta = read_json(path)
    if meta is None:
        raise CorruptDataError(f"{path}: not valid JSON")
    if meta.get("format") != FORMAT:
        raise CorruptDataError(f"{path}: latent cache format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def verify_latent_cache(root: str) -> dict:
    """Re-hash every shard file against the manifest; returns the manifest or raises CorruptDataError."""
    meta = read_latent_meta(root)
    expect = 0
    for record in meta["shards"]:
        if record["start"] != expect or not shard_ok(root, record):
            raise CorruptDataError(f"{root}: shard {record['index']} is missing, truncated or does not match "
                                   "its sha256; delete its files and rerun the prepare command")
        expect = record["stop"]
    if expect != meta["num_items"]:
        raise CorruptDataError(f"{root}: the shards hold {expect} items, the manifest says {meta['num_items']}")
    return meta


def posterior_noise(seed: int, epoch: int, index: int, shape) -> np.ndarray:
    """Standard normal float32 ``eps`` of item ``index`` in ``epoch``: a pure function of its arguments."""
    rng = np.random.default_rng([int(seed), int(epoch), int(index), EPS_STREAM])
    return rng.standard_normal(tuple(shape), dtype=np.float32)


class LatentDataset(EpochFlipMixin, Dataset):
    """Items ``(latent float32 (C, h, w), y int64)`` of a latent cache directory.

    ``posterior="sample"`` (default) returns ``(mean + std * eps) * scale`` with ``eps`` drawn
    from (seed, epoch, index); ``"mean"`` returns ``mean * scale``. The flipped copy is chosen
    per (seed, epoch, index) when the cache has both (``flip_both``) and ``random_flip``.
    """

    def __init__(self, root: str, *, random_flip: bool = True, seed: int = 0, posterior: str = "sample"):
        if posterior not in ("sample", "mean"):
            raise ValueError(f"posterior must be 'sample' or 'mean', got {posterior!r}")
        self.root, self.seed, self.posterior = os.fspath(root), int(seed), posterior
        self.meta = read_latent_meta(self.root)
        shards = self.meta["shards"]
        self._starts = [int(s["start"]) for s in shards]
        self._num = int(self.meta["num_items"])
        if not shards or self._starts[0] != 0 or int(shards[-1]["stop"]) != self._num:
            raise CorruptDataError(f"{self.root}: the manifest's shards do not cover items 0..{self._num}")
        self.random_flip = bool(random_flip) and bool(self.meta["flip_both"])
        self.name, self.channels = "latents", int(self.meta["latent_shape"][0])
        self.num_classes, self.scale = int(self.meta["num_classes"]), float(self.meta["scale"])
        self.classes = list(self.meta.get("classes") or [])
        self._open: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __getstate__(self):  # DataLoader workers reopen the memory maps themselves
        state = dict(self.__dict__)
        state["_open"] = {}
        return state

    def __len__(self) -> int:
        return self._num

    def shard_arrays(self, shard: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read-only memory maps ``(mean, std, labels)`` of shard ``shard``, opened on first use."""
        if shard not in self._open:
            record = self.meta["shards"][shard]
            arrays = []
            for kind in ARRAYS:
                path = os.path.join(self.root, record["files"][kind]["name"])
                try:
                    arrays.append(np.load(path, mmap_mode="r", allow_pickle=False))
                except (OSError, ValueError) as e:
                    raise CorruptDataError(f"{path}: cannot open ({type(e).__name__}: {e}); "
                                           "run `python -m platform.prepare verify` on the cache") from e
            if not (len(arrays[0]) == len(arrays[1]) == len(arrays[2]) == record["count"]):
                raise CorruptDataError(f"{self.root}: shard {shard} arrays do not hold {record['count']} items")
            self._open[shard] = tuple(arrays)
        return self._open[shard]

    def posterior_of(self, index: int, flip: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Unscaled float32 ``(mean, std)`` (C, h, w) of item ``index`` (``flip`` 1: its flipped image)."""
        if not 0 <= index < self._num:
            raise IndexError(f"index {index} out of range for {self._num} items")
        shard = bisect.bisect_right(self._starts, index) - 1
        mean, std, _ = self.shard_arrays(shard)
        local = index - self._starts[shard]
        return np.asarray(mean[local, flip], dtype=np.float32), np.asarray(std[local, flip], dtype=np.float32)

    def label_of(self, index: int) -> int:
        shard = bisect.bisect_right(self._starts, index) - 1
        return int(self.shard_arrays(shard)[2][index - self._starts[shard]])

    def __getitem__(self, index: int):
        index = int(index)
        mean, std = self.posterior_of(index, 1 if self.is_flipped(index) else 0)
        if self.posterior == "sample":
            mean = mean + std * posterior_noise(self.seed, self.epoch, index, mean.shape)
        z = mean * np.float32(self.scale)
        return torch.from_numpy(z), torch.tensor(self.label_of(index), dtype=torch.int64)
