"""``python -m platform.prepare``: build the data a run needs (the VAE latent cache, demo images).

    python -m platform.prepare latents --src /data/imagenet/train --out /data/latents/imagenet256 \\
        --image-size 256 --vae stabilityai/sd-vae-ft-ema --batch-size 64 --workers 8   # Ray: a task per GPU
    python -m platform.prepare latents --src DIR --out CACHE --local                  # this process only
    python -m platform.prepare latents --src DIR --out CACHE --local --tiny-vae --image-size 32  # offline
    python -m platform.prepare verify CACHE                       # re-hash every shard against the manifest
    python -m platform.prepare synthetic-folder --out DIR --classes 4 --per-class 8 --size 32

Rerunning the same ``latents`` command finishes a killed build (finished shards are kept).
Without Ray: ``torchrun --nproc_per_node 8 -m trainers.data.latent_encode --src ... --out ...``.
Bad input (missing source, empty folder, unknown VAE, a cache built with other settings)
prints one ``error:`` line and exits 2. Run from the repository root (see README).
"""
from __future__ import annotations

import argparse
import os
import sys

from trainers.data.latent_args import add_encode_arguments, encode_kwargs

INPUT_ERRORS = ("ValueError", "FileNotFoundError", "DatasetUnavailable", "VaeUnavailable", "CorruptDataError",
                "CorruptImageError", "CacheMismatch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m platform.prepare", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    lat = sub.add_parser("latents", help="encode an image tree into a sharded VAE latent cache",
                         description="Encode --src with a VAE into the latent cache directory --out (resumable).")
    add_encode_arguments(lat)
    lat.add_argument("--workers", type=int, default=None,
                     help="Ray tasks (ranks); default: the cluster's GPU count, or 1 without GPUs")
    lat.add_argument("--local", action="store_true", help="no Ray: encode everything in this process (rank 0 of 1)")
    lat.add_argument("--address", default=None, help="Ray cluster address ('auto', host:port); default: local Ray")
    lat.add_argument("--cpus-per-worker", type=int, default=None,
                     help="CPUs each Ray task reserves (default: loader workers + 1)")
    ver = sub.add_parser("verify", help="re-hash a latent cache's shards against its manifest")
    ver.add_argument("cache", help="the cache directory")
    syn = sub.add_parser("synthetic-folder", help="write a generated class-folder PNG tree (tests, demos)")
    syn.add_argument("--out", required=True)
    syn.add_argument("--classes", type=int, default=4)
    syn.add_argument("--per-class", type=int, default=8)
    syn.add_argument("--size", type=int, default=32)
    syn.add_argument("--seed", type=int, default=0)
    return parser


def _preflight(args: argparse.Namespace) -> None:
    """Cheap checks before any worker starts: the source has an image, the VAE's config loads."""
    if args.kind in ("imagenet_folder", "image_folder"):
        if not args.src or not os.path.isdir(args.src):
            raise FileNotFoundError(f"--src {args.src!r} is not a directory")
        from trainers.data.pixel_datasets import IMAGE_EXTENSIONS
        if not any(f.lower().endswith(IMAGE_EXTENSIONS) for _, _, files in os.walk(args.src, followlinks=True)
                   for f in files):
            raise FileNotFoundError(f"--src {args.src}: no images (extensions {', '.join(IMAGE_EXTENSIONS)})")
    if os.path.isfile(args.out):
        raise FileNotFoundError(f"--out {args.out} is a file; a latent cache is a directory")
    if not args.tiny_vae:
        from trainers.data.vae import check_vae
        check_vae(args.vae)


def _run_ray(args: argparse.Namespace, kwargs: dict) -> list[dict]:
    if args.address:
        from platform.sweep import _use_cluster_token
        _use_cluster_token()  # before Ray is imported (a `ray start` cluster uses token auth)
    import ray

    from trainers.data.latent_encode import encode_latent_cache
    env = {k: os.environ[k] for k in ("HF_HOME", "HF_HUB_OFFLINE", "HF_ENDPOINT") if k in os.environ}
    ray.init(address=args.address, include_dashboard=False, log_to_driver=True,
             runtime_env={"env_vars": {**env, "PYTHONUNBUFFERED": "1"}})
    gpus = int(ray.cluster_resources().get("GPU", 0))
    workers = args.workers or max(gpus, 1)
    cpus = args.cpus_per_worker or (args.loader_workers + 1)
    task = ray.remote(num_gpus=1 if gpus else 0, num_cpus=cpus, max_retries=2)(encode_latent_cache)
    refs = [task.remote(os.path.abspath(args.out), rank=r, world_size=workers, **kwargs) for r in range(workers)]
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as err:
        cause = err.cause if isinstance(getattr(err, "cause", None), Exception) else err
        raise cause from None
    finally:
        ray.shutdown()


def _latents(args: argparse.Namespace) -> int:
    _preflight(args)
    from trainers.data.latent_encode import encode_latent_cache, finalize_cache
    kwargs = encode_kwargs(args)
    if args.local:
        results = [encode_latent_cache(args.out, rank=0, world_size=1, **kwargs)]
    else:
        results = _run_ray(args, kwargs)
    for r in results:
        print(f"rank {r['rank']}/{r['world_size']}: encoded {len(r['encoded'])} shards ({r['images']} images, "
              f"{r['images_per_s']:.1f} images/s), skipped {len(r['skipped'])} finished shards")
    manifest = finalize_cache(os.path.abspath(args.out))
    if manifest is None:
        print(f"error: {args.out} is still incomplete (shards missing); rerun the same command", file=sys.stderr)
        return 1
    print(f"latent cache complete: {manifest}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "synthetic-folder":
            from trainers.data.synthetic_folder import write_synthetic_image_folder
            paths = write_synthetic_image_folder(args.out, classes=args.classes, per_class=args.per_class,
                                                 size=args.size, seed=args.seed)
            print(f"wrote {len(paths)} images under {args.out}")
            return 0
        if args.command == "verify":
            from trainers.data.latent_cache import verify_latent_cache
            meta = verify_latent_cache(args.cache)
            print(f"ok: {meta['num_items']} items in {len(meta['shards'])} shards, checksums match")
            return 0
        return _latents(args)
    except Exception as err:  # input errors: one line, exit 2; anything else is a bug: traceback
        if type(err).__name__ not in INPUT_ERRORS:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
