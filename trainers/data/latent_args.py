"""The options of a latent-cache build, shared by ``python -m platform.prepare latents`` and
``torchrun -m trainers.data.latent_encode`` (this module imports neither torch nor diffusers,
so ``--help`` stays fast)."""
from __future__ import annotations

import argparse

DEFAULT_VAE = "stabilityai/sd-vae-ft-ema"  # trainers.data.vae.DEFAULT_VAE (kept torch-free here)
SOURCE_KINDS = ("imagenet_folder", "image_folder", "fashion_mnist", "mnist", "digits", "coco_captions")


def add_encode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src", default=None, help="root of the image tree (imagenet_folder: one folder per class)")
    parser.add_argument("--kind", default="imagenet_folder", choices=SOURCE_KINDS,
                        help="how to read --src (default imagenet_folder: class-conditional)")
    parser.add_argument("--out", required=True, help="the cache directory to write (or to finish)")
    parser.add_argument("--image-size", type=int, default=256, help="ADM centre crop to this side (default 256)")
    parser.add_argument("--vae", default=DEFAULT_VAE, help=f"Hub id or local AutoencoderKL folder (default {DEFAULT_VAE})")
    parser.add_argument("--tiny-vae", action="store_true", help="a randomly initialised tiny VAE (offline tests)")
    parser.add_argument("--vae-seed", type=int, default=0, help="seed of --tiny-vae")
    parser.add_argument("--scale", type=float, default=0.18215, help="latent scale (default 0.18215)")
    parser.add_argument("--no-flip", action="store_true", help="do not also encode the horizontally flipped image")
    parser.add_argument("--shard-size", type=int, default=2048, help="images per shard (default 2048)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per VAE forward (x2 with flips)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16"),
                        help="storage dtype of mean/std (float16 halves the size; see docs/training.md)")
    parser.add_argument("--device", default=None, help="default: cuda:$LOCAL_RANK when a GPU exists, else cpu")
    parser.add_argument("--loader-workers", type=int, default=4, help="image-decoding DataLoader workers per rank")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per rank")
    parser.add_argument("--skip-corrupt", action="store_true", help="leave out unreadable images instead of failing")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")


def encode_kwargs(args: argparse.Namespace) -> dict:
    """Keyword arguments of ``trainers.data.latent_encode.encode_latent_cache`` from parsed options."""
    return dict(src=args.src, kind=args.kind, image_size=args.image_size, vae=args.vae, tiny_vae=args.tiny_vae,
                vae_seed=args.vae_seed, scale=args.scale, flip_both=not args.no_flip, shard_size=args.shard_size,
                batch_size=args.batch_size, dtype=args.dtype, device=args.device,
                loader_workers=args.loader_workers, threads=args.threads, skip_corrupt=args.skip_corrupt,
                progress=not args.no_progress)
