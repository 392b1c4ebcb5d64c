"""Build a sharded latent cache (format: :mod:`trainers.data.latent_cache`), resumably and in parallel.

    encode_latent_cache("latents/imagenet256", src="/data/imagenet/train", kind="imagenet_folder",
                        image_size=256, vae="stabilityai/sd-vae-ft-ema", rank=0, world_size=1)

Rank ``r`` of ``w`` encodes shards r, r + w, ... Each finished shard's ``.npy`` files are
written atomically, then its ``done-NNNNN.json`` record (sha256 + bytes per file); a rerun
skips shards whose record verifies and redoes the rest, so a killed build loses at most the
shards in flight. ``plan.json`` (settings + shard plan) is written first: a rerun with other
settings (VAE, scale, image size, flips, dtype, shard size, source images) is refused with
:class:`CacheMismatch`. Every rank, once its own shards are done, writes ``manifest.json`` if
all records exist (a record is written before this check, so the last rank to finish always
sees them all; concurrent writers write the same bytes atomically): no barrier needed.

Drivers: ``python -m platform.prepare latents ...`` (local or one Ray task per GPU), or
``torchrun --nproc_per_node 8 -m trainers.data.latent_encode --src ... --out ...`` (rank and
world from RANK / WORLD_SIZE).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from trainers.data.base import CorruptDataError, DatasetUnavailable
from trainers.data.latent_args import add_encode_arguments, encode_kwargs
from trainers.data.latent_cache import (
    ARRAYS,
    FORMAT,
    MANIFEST,
    PLAN,
    read_json,
    shard_file,
    shard_ok,
)
from trainers.data.registry import build_dataset
from trainers.data.vae import DEFAULT_VAE, VaeUnavailable, load_vae, vae_spec
from trainers.files import atomic_path, atomic_write_json, file_sha256


class CacheMismatch(ValueError):
    """The cache directory holds (part of) a cache built with other settings."""


def _source_fingerprint(dataset, root: str | None) -> str | None:
    samples = getattr(dataset, "samples", None)
    if samples is None:
        return None
    h = hashlib.sha256()
    for path, label in samples:
        h.update(f"{os.path.relpath(path, root)}\t{int(label)}\n".encode())
    return h.hexdigest()


def make_plan(dataset, spec: dict, *, kind: str, src: str | None, image_size: int, scale: float, flip_both: bool,
              dtype: str, shard_size: int) -> dict:
    """Everything that fixes the cache's content (the manifest, less its shard records)."""
    n = len(dataset)
    root = os.path.abspath(src) if src else None
    down = spec["downsample"]
    return {
        "format": FORMAT, "vae": spec, "scale": float(scale), "image_size": int(image_size),
        "latent_shape": [spec["latent_channels"], image_size // down, image_size // down],
        "flip_both": bool(flip_both), "dtype": dtype, "posterior": "mean+std", "num_items": n,
        "num_classes": int(getattr(dataset, "num_classes", 1)), "classes": list(getattr(dataset, "classes", []) or []),
        "source": {"dataset": kind, "root": root, "num_items": n, "files_sha256": _source_fingerprint(dataset, root)},
        "shard_size": int(shard_size), "num_shards": -(-n // shard_size),
    }


def check_plan(out: str, plan: dict) -> None:
    """Write ``plan.json`` if the directory has none; raise :class:`CacheMismatch` if it differs."""
    path = os.path.join(out, PLAN)
    old = read_json(path) or read_json(os.path.join(out, MANIFEST))
    if old is None:
        if os.path.isdir(out) and any(f.endswith(".npy") for f in os.listdir(out)):
            raise CacheMismatch(f"{out} holds .npy files but no {PLAN}: not a cache this code started; "
                                "choose another --out")
        atomic_write_json(path, plan, fsync=True)
        old = read_json(path)
    old = {k: v for k, v in old.items() if k != "shards"}
    if old != plan:
        diff = {k: (old.get(k), plan.get(k)) for k in sorted(set(old) | set(plan)) if old.get(k) != plan.get(k)}
        raise CacheMismatch(f"{out} holds a latent cache built with other settings (cached, requested): {diff}; "
                            "rerun with the same settings or choose another --out")


def shard_range(plan: dict, shard: int) -> tuple[int, int]:
    start = shard * plan["shard_size"]
    return start, min(start + plan["shard_size"], plan["num_items"])


def finalize_cache(out: str) -> str | None:
    """Write ``manifest.json`` when every shard's record exists and its files have the recorded
    sizes; returns the manifest path, or None while shards are missing."""
    plan = read_json(os.path.join(out, PLAN))
    if plan is None:
        return None
    records = [read_json(os.path.join(out, shard_file("done", i))) for i in range(plan["num_shards"])]
    if not all(shard_ok(out, r, checksums=False) for r in records):
        return None
    path = os.path.join(out, MANIFEST)
    if not os.path.exists(path):
        atomic_write_json(path, {**plan, "shards": records}, fsync=True)
    return path


def _save_npy(out: str, name: str, array: np.ndarray) -> dict:
    path = os.path.join(out, name)
    with atomic_path(path, fsync=True) as tmp:
        np.save(tmp, array, allow_pickle=False)
    return {"name": name, "sha256": file_sha256(path), "bytes": os.path.getsize(path)}


def write_shard(out: str, shard: int, start: int, mean: np.ndarray, std: np.ndarray, labels: np.ndarray) -> dict:
    """Write one shard's arrays, then its record (last, atomically); returns the record."""
    files = {kind: _save_npy(out, shard_file(kind, shard), arr) for kind, arr in zip(ARRAYS, (mean, std, labels))}
    record = {"index": shard, "start": start, "stop": start + len(labels), "count": len(labels), "files": files}
    atomic_write_json(os.path.join(out, shard_file("done", shard)), record, fsync=True)
    return record


@torch.no_grad()
def encode_batch(vae, x: torch.Tensor, *, flip_both: bool) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and std, float32 numpy (b, F, C, h, w), of images ``x`` in [-1, 1] (and their flips)."""
    x = x.to(device=vae.device, dtype=vae.dtype, non_blocking=True)
    if x.shape[1] == 1 and vae.config.in_channels == 3:
        x = x.expand(-1, 3, -1, -1)
    b = x.shape[0]
    dist = vae.encode(torch.cat([x, x.flip(-1)]) if flip_both else x).latent_dist

    def per_item(t: torch.Tensor) -> np.ndarray:
        t = t.float().cpu().numpy()
        return t.reshape(-1, b, *t.shape[1:]).swapaxes(0, 1)
    return per_item(dist.mean), per_item(dist.std)


def _default_device() -> str:
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


def encode_latent_cache(out: str, *, src: str | None, kind: str = "imagenet_folder", image_size: int = 256,
                        vae: str = DEFAULT_VAE, tiny_vae: bool = False, vae_seed: int = 0, scale: float = 0.18215,
                        flip_both: bool = True, shard_size: int = 2048, batch_size: int = 64, dtype: str = "float32",
                        device: str | None = None, loader_workers: int = 4, threads: int | None = None,
                        rank: int | None = None, world_size: int | None = None, skip_corrupt: bool = False,
                        progress: bool = True) -> dict:
    """Encode this rank's shards of ``src`` into the cache directory ``out`` (see the module docstring).

    Returns ``{"rank", "world_size", "encoded": [shards], "skipped": [shards], "images",
    "seconds", "images_per_s", "manifest": path or None}``.
    """
    from tqdm.auto import tqdm
    rank = int(os.environ.get("RANK", "0")) if rank is None else int(rank)
    world_size = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else int(world_size)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    if shard_size < 1 or batch_size < 1 or dtype not in ("float32", "float16"):
        raise ValueError(f"need shard_size >= 1, batch_size >= 1, dtype float32|float16 "
                         f"(got {shard_size}, {batch_size}, {dtype!r})")
    if kind not in ("fashion_mnist", "mnist", "digits") and not (src and os.path.isdir(src)):
        raise DatasetUnavailable(f"source folder {src!r} does not exist")
    if threads:
        torch.set_num_threads(int(threads))
    out = os.path.abspath(out)
    dataset = build_dataset(kind, root=src, image_size=image_size, random_flip=False, skip_corrupt=skip_corrupt)
    if len(dataset) == 0:
        raise DatasetUnavailable(f"{src}: no images")
    model = load_vae(vae, offline_tiny=tiny_vae, seed=vae_seed)
    plan = make_plan(dataset, vae_spec(model), kind=kind, src=src, image_size=image_size, scale=scale,
                     flip_both=flip_both, dtype=dtype, shard_size=shard_size)
    check_plan(out, plan)
    result = {"rank": rank, "world_size": world_size, "encoded": [], "skipped": [], "images": 0, "seconds": 0.0}
    mine = list(range(rank, plan["num_shards"], world_size))
    if os.path.exists(os.path.join(out, MANIFEST)):
        return {**result, "skipped": mine, "images_per_s": 0.0, "manifest": os.path.join(out, MANIFEST)}
    todo = []
    for shard in mine:
        record = read_json(os.path.join(out, shard_file("done", shard)))
        ok = record is not None and (record["start"], record["stop"]) == shard_range(plan, shard)
        (result["skipped"] if ok and shard_ok(out, record) else todo).append(shard)
    batches = [list(range(s, min(s + batch_size, stop))) for shard in todo
               for start, stop in [shard_range(plan, shard)] for s in range(start, stop, batch_size)]
    model = model.to(device or _default_device())
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=loader_workers,
                        pin_memory=model.device.type == "cuda")
    bar = tqdm(total=sum(len(b) for b in batches), unit="img", unit_scale=True, disable=not progress,
               desc=f"latents rank {rank}/{world_size}", dynamic_ncols=True)
    store = np.dtype(dtype)
    t0, pending = time.perf_counter(), list(todo)
    buffers: tuple[list, list, list] = ([], [], [])
    for x, y in loader:
        mean, std = encode_batch(model, x, flip_both=flip_both)
        for buf, arr in zip(buffers, (mean.astype(store), std.astype(store), y.reshape(-1).numpy().astype(np.int64))):
            buf.append(arr)
        bar.update(len(y))
        start, stop = shard_range(plan, pending[0])
        if sum(len(a) for a in buffers[2]) == stop - start:
            write_shard(out, pending[0], start, *(np.concatenate(buf) for buf in buffers))
            result["encoded"].append(pending.pop(0))
            buffers = ([], [], [])
    bar.close()
    result["seconds"] = time.perf_counter() - t0
    result["images"] = sum(len(b) for b in batches)
    result["images_per_s"] = result["images"] / result["seconds"] if result["images"] else 0.0
    result["manifest"] = finalize_cache(out)
    return result


def main(argv: list[str] | None = None) -> int:
    """``torchrun --nproc_per_node 8 -m trainers.data.latent_encode --src ... --out ...``"""
    parser = argparse.ArgumentParser(prog="python -m trainers.data.latent_encode",
                                     description="Encode this rank's shards of a latent cache (rank and world "
                                                 "from --rank/--world-size or torchrun's RANK/WORLD_SIZE).")
    add_encode_arguments(parser)
    parser.add_argument("--rank", type=int, default=None)
    parser.add_argument("--world-size", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        result = encode_latent_cache(args.out, rank=args.rank, world_size=args.world_size, **encode_kwargs(args))
    except (ValueError, FileNotFoundError, DatasetUnavailable, VaeUnavailable, CorruptDataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"rank {result['rank']}/{result['world_size']}: encoded {len(result['encoded'])} shards "
          f"({result['images']} images, {result['images_per_s']:.1f} images/s), skipped {len(result['skipped'])}; "
          f"manifest: {result['manifest'] or 'not yet (other ranks still running)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
