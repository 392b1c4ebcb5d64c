"""Datasets by name: ``build_dataset`` and ``dataset_info`` (items are ``(x, y)`` with x float32
(C, H, W) in [-1, 1] and y a 0-d int64 tensor, always 0 for unconditional datasets).

    ds = build_dataset("fashion_mnist", image_size=32, split="train")
    ds.set_epoch(epoch)          # before iterating each epoch (flips: trainers/data/base.py)

Names: ``fashion_mnist`` (the embedded default), ``mnist``, ``digits`` (scikit-learn's 8x8
digits, if sklearn is installed), ``image_folder`` (FFHQ-style: every image under ``root``,
unconditional), ``imagenet_folder`` (one sub-folder per class, labels = sorted folder names)
and ``latents`` (a VAE latent cache directory, :mod:`trainers.data.latent_cache`, built by
``python -m platform.prepare latents``); ``fashion_mnist_captions`` and ``coco_captions`` (MS-COCO
2014) give caption ids as ``y`` (:mod:`trainers.data.captioned`, for text-conditional models).
"""
from __future__ import annotations

from torch.utils.data import Dataset

from trainers.data.captioned import CAPTIONED_DATASETS, build_captioned
from trainers.data.latent_cache import LatentDataset, read_latent_meta
from trainers.data.pixel_datasets import (
    ArrayImageDataset,
    ImageFolderDataset,
    class_folders,
    digits_arrays,
    load_idx_dataset,
)

DATASET_NAMES = ("fashion_mnist", "mnist", "digits", "image_folder", "imagenet_folder", "latents", *CAPTIONED_DATASETS)


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    key = {"fashionmnist": "fashion_mnist", "imagenet": "imagenet_folder", "ffhq": "image_folder",
           "coco": "coco_captions"}.get(key, key)
    if key not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    return key


def dataset_info(name: str, root: str | None = None) -> tuple[int, int]:
    """``(channels, num_classes)`` without loading images; ``num_classes`` is 1 when unconditional.

    ``imagenet_folder`` counts class folders under ``root`` (1000 without root); ``latents``
    reads the cache's metadata when ``root`` is given (else SD-VAE/ImageNet: 4, 1000).
    """
    key = _canonical(name)
    if key in ("fashion_mnist", "mnist", "digits"):
        return 1, 10
    if key in CAPTIONED_DATASETS:  # conditioned on captions, not classes
        return (1 if key == "fashion_mnist_captions" else 3), 1
    if key == "image_folder":
        return 3, 1
    if key == "imagenet_folder":
        return 3, (len(class_folders(root)) if root else 1000)
    if root:
        meta = read_latent_meta(root)
        return int(meta["latent_shape"][0]), int(meta["num_classes"])
    return 4, 1000


def build_dataset(name: str, *, root: str | None = None, image_size: int = 32, split: str = "train",
                  random_flip: bool = True, skip_corrupt: bool = False, seed: int = 0,
                  download: bool = True) -> Dataset:
    """Build a data set by name (see the module docstring); ``seed`` drives the per-epoch flips.

    ``download`` only matters for fashion_mnist/mnist when no local copy exists. Folder and
    latent data sets ignore ``split``: point ``root`` at the split you want.
    """
    key = _canonical(name)
    if key in ("fashion_mnist", "mnist"):
        images, labels = load_idx_dataset(key, split, root=root, download=download)
        return ArrayImageDataset(images, labels, image_size=image_size, random_flip=random_flip,
                                 seed=seed, name=key)
    if key == "digits":
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        images, labels = digits_arrays(split)
        return ArrayImageDataset(images, labels, image_size=image_size, random_flip=random_flip,
                                 seed=seed, name=key)
    if key in CAPTIONED_DATASETS:
        return build_captioned(key, root=root, image_size=image_size, split=split, random_flip=random_flip,
                               seed=seed, download=download)
    if key in ("image_folder", "imagenet_folder"):
        return ImageFolderDataset(root, image_size=image_size, labelled=(key == "imagenet_folder"),
                                  random_flip=random_flip, skip_corrupt=skip_corrupt, seed=seed)
    if not root:
        raise ValueError("build_dataset('latents') needs root=<latent cache directory> "
                         "(build one with `python -m platform.prepare latents`)")
    return LatentDataset(root, random_flip=random_flip, seed=seed)
