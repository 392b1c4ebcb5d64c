"""Captioned image sets for the text-conditional DiT (docs/text_conditional.md).

Items are ``(x, y)`` as in every data set here, with ``y`` a 0-d int64 **caption id**: a row of
the split's caption table (row 0 is the empty caption "", the null condition of classifier-free
guidance).  Batching, exact resume and the deterministic flips stay as they are; the trainer
turns ids into token embeddings with the split's cached caption bank (trainers/text/bank.py).

* ``fashion_mnist_captions``: Fashion-MNIST with captions composed from the class name and what
  the image shows: shade (mean ink intensity: dark / grey / bright), size (inked area: small /
  medium / large) and, for footwear, which way the toe points (the heel or shaft is the heavier
  top half).  Three templates per image, so the split has 3 x N items (item ``k*N + j`` is image
  ``j`` with template ``k``).  A flipped image gets the caption of the flipped image (the toe
  direction swaps).  Fully deterministic: thresholds are constants (the train set's tertiles).
* ``coco_captions``: MS-COCO 2014 (``<root>/train2014``, ``<root>/val2014`` and
  ``<root>/annotations/captions_{train,val}2014.json``); one item per (image, caption) pair,
  ordered caption-major (every image's first caption, then every second one, ...): 414,113 items over
  82,783 training images.  Split "val" (or "test") is val2014, the held-out captions.

``caption_table(name, root, split)`` gives a split's captions without loading images (the caption
bank is built from it); ``HELD_OUT[name]`` names the split whose captions evaluation samples.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from trainers.data.base import CorruptDataError, CorruptImageError, DatasetUnavailable, EpochFlipMixin

CAPTIONED_DATASETS = ("fashion_mnist_captions", "coco_captions")
HELD_OUT = {"fashion_mnist_captions": "test", "coco_captions": "val"}
FASHION_CLASSES = ("t-shirt", "pair of trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle boot")
FOOTWEAR = (5, 7, 9)
INK_LEVEL = 25                     # a pixel above this (of 255) is part of the garment
SHADE_EDGES = (144.0, 183.0)       # mean ink intensity: dark < 144 <= grey < 183 <= bright
AREA_EDGES = (0.36, 0.54)          # inked fraction of the 28x28 image: small / medium / large
SHADES, SIZES, FACING = ("dark", "grey", "bright"), ("small", "medium", "large"), ("", "left", "right")
TEMPLATES = 3
COCO_SPLITS = {"train": ("train2014", "captions_train2014.json"), "val": ("val2014", "captions_val2014.json"),
               "test": ("val2014", "captions_val2014.json")}


@dataclass(frozen=True, eq=False)
class CaptionTable:
    """A split's captions: ``captions`` (unique strings, row 0 = ""), and per item its image index,
    its caption row unflipped / flipped (``rows`` (n, 2)) and, where known, its class."""

    captions: tuple
    rows: np.ndarray
    images: np.ndarray
    classes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)


def _unique(strings_per_item: list[list[str]]) -> tuple[tuple, dict]:
    index = {"": 0}
    for group in strings_per_item:
        for s in group:
            index.setdefault(s, len(index))
    return tuple(index), index


# --- Fashion-MNIST captions ------------------------------------------------------------------

def fashion_attributes(images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per image: shade and size indices (0..2) and toe direction (0 none, 1 left, 2 right) unflipped."""
    flat = images.reshape(len(images), -1)
    ink = flat > INK_LEVEL
    count = np.count_nonzero(ink, axis=1)
    shade = np.digitize((flat * ink).sum(1, dtype=np.int64) / np.maximum(count, 1), SHADE_EDGES)
    size = np.digitize(count / flat.shape[1], AREA_EDGES)
    cols = np.arange(images.shape[2], dtype=np.float64) + 0.5  # column centres; column masses below
    top, full = images[:, : images.shape[1] // 2].sum(1, dtype=np.int64), images.sum(1, dtype=np.int64)
    heel_right = (top @ cols) / np.maximum(top.sum(1), 1) >= (full @ cols) / np.maximum(full.sum(1), 1)
    facing = np.where(np.isin(labels, FOOTWEAR), np.where(heel_right, 1, 2), 0)  # heel right: toe points left
    return {"shade": shade.astype(np.int64), "size": size.astype(np.int64), "facing": facing.astype(np.int64)}


def fashion_caption(template: int, label: int, shade: int, size: int, facing: int) -> str:
    name = FASHION_CLASSES[label]
    tail = f", facing {FACING[facing]}" if facing else ""
    if template == 0:
        return f"a {SHADES[shade]} {name}"
    if template == 1:
        return f"a {SIZES[size]} {name}{tail}"
    return f"a photo of a {SIZES[size]}, {SHADES[shade]} {name}{tail}"


def fashion_table(images: np.ndarray, labels: np.ndarray) -> CaptionTable:
    """The caption table of Fashion-MNIST arrays (3 templates per image, flip-aware)."""
    a = fashion_attributes(images, labels)
    mirrored = np.where(a["facing"] == 0, 0, 3 - a["facing"])
    codes = [((labels * 3 + a["shade"]) * 3 + a["size"]) * 3 + f for f in (a["facing"], mirrored)]
    combos = np.unique(np.concatenate(codes))

    def text(k, code):
        code, facing = divmod(int(code), 3)
        code, size = divmod(code, 3)
        label, shade = divmod(code, 3)
        return fashion_caption(k, label, shade, size, facing)
    strings = [[text(k, c) for c in combos] for k in range(TEMPLATES)]
    captions, index = _unique(strings)
    n = len(labels)
    rows = np.zeros((TEMPLATES * n, 2), dtype=np.int64)
    for k in range(TEMPLATES):
        lookup = np.array([index[s] for s in strings[k]], dtype=np.int64)
        for flip in (0, 1):
            rows[k * n:(k + 1) * n, flip] = lookup[np.searchsorted(combos, codes[flip])]
    images_of = np.tile(np.arange(n, dtype=np.int64), TEMPLATES)
    return CaptionTable(captions, rows, images_of, np.asarray(labels, dtype=np.int64)[images_of])


def _fashion_arrays(split: str, root: str | None, download: bool = True):
    from trainers.data.pixel_datasets import load_idx_dataset
    return load_idx_dataset("fashion_mnist", split, root=root, download=download)


# --- MS-COCO 2014 --------------------------------------------------------------------------------

def coco_paths(root: str, split: str) -> tuple[str, str]:
    """``(image folder, captions json)`` of a COCO 2014 split under ``root``."""
    if split not in COCO_SPLITS:
        raise ValueError(f"coco_captions split must be one of {tuple(COCO_SPLITS)}, got {split!r}")
    folder, annotations = COCO_SPLITS[split]
    if not root or not os.path.isdir(root):
        raise DatasetUnavailable(f"MS-COCO root {root!r} does not exist (pass data_root=<folder with train2014/, "
                                 "val2014/ and annotations/captions_train2014.json, captions_val2014.json>)")
    return os.path.join(root, folder), os.path.join(root, "annotations", annotations)


def read_coco_captions(json_path: str) -> tuple[list[str], list[list[str]]]:
    """File names (sorted by image id) and each image's captions (by annotation id), images without
    captions left out; whitespace in captions is collapsed."""
    if not os.path.isfile(json_path):
        raise DatasetUnavailable(f"MS-COCO captions file {json_path} not found (annotations_trainval2014.zip "
                                 "unpacks to <root>/annotations/)")
    try:
        with open(json_path, encoding="utf-8") as fh:
            blob = json.load(fh)
        names = {int(im["id"]): str(im["file_name"]) for im in blob["images"]}
        notes = sorted((int(a["id"]), int(a["image_id"]), " ".join(str(a["caption"]).split()))
                       for a in blob["annotations"])
    except (ValueError, KeyError, TypeError) as err:
        raise CorruptDataError(f"{json_path}: not a COCO captions file ({type(err).__name__}: {err})") from err
    per_image: dict[int, list[str]] = {}
    for _, image_id, caption in notes:
        if image_id not in names:
            raise CorruptDataError(f"{json_path}: a caption refers to image id {image_id}, which is not listed")
        per_image.setdefault(image_id, []).append(caption)
    ids = sorted(per_image)
    return [names[i] for i in ids], [per_image[i] for i in ids]


def coco_table(captions_per_image: list[list[str]]) -> CaptionTable:
    """Caption-major items: round k holds the k-th caption of every image that has one."""
    captions, index = _unique(captions_per_image)
    items = [(j, index[caps[k]]) for k in range(max(map(len, captions_per_image), default=0))
             for j, caps in enumerate(captions_per_image) if k < len(caps)]
    images = np.array([j for j, _ in items], dtype=np.int64)
    rows = np.array([r for _, r in items], dtype=np.int64).reshape(-1, 1).repeat(2, axis=1)
    return CaptionTable(captions, rows, images, None)


@lru_cache(maxsize=8)
def _coco(root: str, split: str) -> tuple[tuple, CaptionTable]:
    folder, json_path = coco_paths(root, split)
    names, captions = read_coco_captions(json_path)
    paths = tuple(os.path.join(folder, n) for n in names)
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DatasetUnavailable(f"{len(missing)} of {len(paths)} MS-COCO images listed in {json_path} are missing, "
                                 f"e.g. {missing[0]} (unpack {os.path.basename(folder)}.zip into {root})")
    return paths, coco_table(captions)


# --- tables and data sets by name ---------------------------------------------------------------

def caption_table(name: str, root: str | None, split: str, download: bool = True) -> CaptionTable:
    """The caption table of split ``split`` of a captioned data set (no image is decoded), once per process."""
    return _caption_table(name, root or None, split, bool(download))


@lru_cache(maxsize=8)
def _caption_table(name: str, root: str | None, split: str, download: bool) -> CaptionTable:
    if name == "fashion_mnist_captions":
        return fashion_table(*_fashion_arrays(split, root, download))
    if name == "coco_captions":
        return _coco(root, split)[1]
    raise ValueError(f"{name!r} is not a captioned data set ({', '.join(CAPTIONED_DATASETS)})")


class CaptionedDataset(EpochFlipMixin, Dataset):
    """Items of a :class:`CaptionTable`; ``load(j)`` returns image ``j`` unflipped in [-1, 1]."""

    num_classes, classes = 1, []  # not class-conditional (a latent cache built from it records 1)

    def __init__(self, table: CaptionTable, load, *, name: str, channels: int, random_flip: bool, seed: int,
                 paths: tuple | None = None):
        self.table, self.load, self.name, self.channels = table, load, name, channels
        self.random_flip, self.seed = random_flip, int(seed)
        if paths is not None:  # (path, caption id) per item: the latent cache fingerprints its source with it
            self.samples = [(paths[j], int(r)) for j, r in zip(table.images, table.rows[:, 0])]

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int):
        x = self.load(int(self.table.images[index]))
        flipped = self.is_flipped(index)
        if flipped:
            x = x.flip(-1)
        return x, torch.tensor(int(self.table.rows[index, int(flipped)]), dtype=torch.int64)


class _CocoImages:
    """Image ``j`` of a COCO split, ADM centre crop (a picklable callable: DataLoader workers copy it)."""

    def __init__(self, paths: tuple, image_size: int):
        self.paths, self.image_size = paths, int(image_size)

    def __call__(self, j: int) -> torch.Tensor:
        from PIL import Image

        from trainers.data.pixel_datasets import center_crop_arr
        try:
            with Image.open(self.paths[j]) as im:
                pixels = center_crop_arr(im.convert("RGB"), self.image_size)
        except Exception as e:
            raise CorruptImageError(f"cannot decode MS-COCO image {self.paths[j]}: {type(e).__name__}: {e}") from e
        return torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1).div(127.5).sub(1.0).contiguous()


class _ArrayImages:
    """Image ``j`` of an in-memory grey set (the pixels of an unflipped ArrayImageDataset)."""

    def __init__(self, pixels):
        self.pixels = pixels

    def __call__(self, j: int) -> torch.Tensor:
        return self.pixels[j][0]


def build_captioned(name: str, *, root: str | None, image_size: int, split: str, random_flip: bool, seed: int,
                    download: bool = True) -> CaptionedDataset:
    """A captioned data set by name (see the module docstring)."""
    if name == "fashion_mnist_captions":
        from trainers.data.pixel_datasets import ArrayImageDataset
        images, labels = _fashion_arrays(split, root, download)
        pixels = ArrayImageDataset(images, labels, image_size=image_size, random_flip=False, name="fashion_mnist")
        return CaptionedDataset(caption_table(name, root, split, download), _ArrayImages(pixels), name=name,
                                channels=1, random_flip=random_flip, seed=seed)
    paths, table = _coco(root, split)
    return CaptionedDataset(table, _CocoImages(paths, image_size), name=name, channels=3,
                            random_flip=random_flip, seed=seed, paths=paths)
