"""Domain feature set: a small CNN classifier trained once per data set, cached on disk.

    model, info = load_or_train("fashion_mnist")     # trains on first use (~1 min on 2 cores)
    fs = domain_feature_set("fashion_mnist")         # FeatureSet "domain-fashion_mnist"

Features are the 128-d penultimate layer (FID, precision/recall); the logits give the
Inception-Score analogue. The weights live in ``<cache>/domain_classifier/<key>.pt`` with a
JSON sidecar recording the test accuracy; training below ``min_accuracy`` raises. Writes are
atomic (unique temp file + ``os.replace``) and guarded by a file lock, so concurrent trials
train it once. Training is deterministic given the seed (CPU, ``threads`` threads).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainers.evaluation.features import FeatureSet, to_float_nchw
from trainers.files import atomic_path, atomic_write_json

VERSION = 1
FEATURE_DIM = 128


@dataclass(frozen=True)
class ClassifierConfig:
    width: int = 16          # channels of the first conv; then 2x, 4x
    epochs: int = 4
    min_steps: int = 1200    # small data sets train for more epochs
    batch_size: int = 128
    lr: float = 3e-3         # one-cycle peak
    seed: int = 0
    image_size: int = 32
    min_accuracy: float = 0.90
    threads: int = 1         # fixed, for reproducibility (and 2 threads often lose on a busy box)


class DomainCNN(nn.Module):
    """Three stride-2 conv blocks (32 -> 4 pixels), a 128-d penultimate layer, a linear head."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, image_size: int = 32):
        super().__init__()

        def block(i, o):
            return [nn.Conv2d(i, o, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]
        side = math.ceil(image_size / 8)
        self.body = nn.Sequential(*block(in_channels, width), *block(width, 2 * width),
                                  *block(2 * width, 4 * width), nn.Flatten(),
                                  nn.Linear(4 * width * side * side, FEATURE_DIM), nn.ReLU())
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def load_split_tensors(dataset: str, split: str, image_size: int = 32, data_root: str | None = None,
                       limit: int | None = None):
    """(x float32 (N, C, S, S) in [-1, 1], y int64 (N,)) of a split, via ``trainers.data``."""
    from torch.utils.data import DataLoader, Subset

    from trainers.data.registry import build_dataset
    ds = build_dataset(dataset, root=data_root, image_size=image_size, split=split, random_flip=False)
    if limit is not None and limit < len(ds):
        ds = Subset(ds, range(limit))
    xs, ys = zip(*DataLoader(ds, batch_size=2048, shuffle=False, num_workers=0))
    return torch.cat(xs), torch.cat(ys)


def train_classifier(x: torch.Tensor, y: torch.Tensor, num_classes: int,
                     cfg: ClassifierConfig = ClassifierConfig()) -> DomainCNN:
    """Adam + one-cycle schedule on CPU with ``cfg.threads`` threads; same seed and data -> same weights."""
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(x, y, num_classes, cfg)
    finally:
        torch.set_num_threads(threads)


def _train(x, y, num_classes, cfg):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = DomainCNN(x.shape[1], num_classes, cfg.width, x.shape[-1])
    gen = torch.Generator().manual_seed(cfg.seed)
    bs = min(cfg.batch_size, len(x))
    per_epoch = len(x) // bs
    epochs = max(cfg.epochs, math.ceil(cfg.min_steps / per_epoch))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=epochs * per_epoch)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(per_epoch):
            idx = perm[i * bs:(i + 1) * bs]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 2048) -> float:
    model.eval()
    correct = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum()) for i in range(0, len(x), batch))
    return correct / max(len(x), 1)


def classifier_key(dataset: str, cfg: ClassifierConfig, data_root: str | None = None) -> str:
    """File stem naming the data set, the config and the code version."""
    blob = json.dumps({**asdict(cfg), "root": data_root, "v": VERSION}, sort_keys=True)
    return f"{dataset}-v{VERSION}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"


def _load(path: str) -> DomainCNN:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = DomainCNN(blob["in_channels"], blob["num_classes"], blob["width"], blob["image_size"])
    model.load_state_dict(blob["state_dict"])
    return model.eval()


def load_or_train(dataset: str, cfg: ClassifierConfig = ClassifierConfig(), cache_dir: str | None = None,
                  data_root: str | None = None, verbose: bool = True) -> tuple[DomainCNN, dict]:
    """The cached classifier of ``dataset`` and its sidecar info, training it on first use."""
    from filelock import FileLock

    from trainers.paths import cache_dir as default_cache_dir
    folder = os.path.join(cache_dir or default_cache_dir(), "domain_classifier")
    os.makedirs(folder, exist_ok=True)
    stem = os.path.join(folder, classifier_key(dataset, cfg, data_root))
    with FileLock(stem + ".lock"):
        if os.path.isfile(stem + ".pt") and os.path.isfile(stem + ".json"):
            with open(stem + ".json") as fh:
                return _load(stem + ".pt"), json.load(fh)
        if verbose:
            print(f"[domain_classifier] training the {dataset} classifier (cached in {folder})", flush=True)
        t0 = time.perf_counter()
        x, y = load_split_tensors(dataset, "train", cfg.image_size, data_root)
        num_classes = int(y.max()) + 1
        if num_classes < 2:
            raise ValueError(f"{dataset} has no class labels: domain features need a labelled data set "
                             "(use feature_set='inception')")
        model = train_classifier(x, y, num_classes, cfg)
        train_seconds = time.perf_counter() - t0
        xt, yt = load_split_tensors(dataset, "test", cfg.image_size, data_root)
        acc = accuracy(model, xt, yt)
        info = {"dataset": dataset, "feature_set": f"domain-{dataset}", "test_accuracy": acc,
                "train_seconds": round(train_seconds, 2), "n_train": len(x), "n_test": len(xt),
                "num_classes": num_classes,
                "version": VERSION, "config": asdict(cfg)}
        if verbose:
            print(f"[domain_classifier] test accuracy {acc:.4f} after {train_seconds:.1f}s", flush=True)
        if acc < cfg.min_accuracy:
            raise RuntimeError(f"domain classifier for {dataset}: test accuracy {acc:.4f} < {cfg.min_accuracy}")
        blob = {"state_dict": model.state_dict(), "in_channels": x.shape[1], "num_classes": num_classes,
                "width": cfg.width, "image_size": cfg.image_size}
        with atomic_path(stem + ".pt") as tmp:
            torch.save(blob, tmp)
        atomic_write_json(stem + ".json", info)
        return model, info


def domain_prepare(channels: int, image_size: int):
    """Images -> float (N, channels, image_size, image_size) in [-1, 1] (grey <-> RGB, resize)."""
    def prepare(images) -> torch.Tensor:
        x = to_float_nchw(images)
        if x.shape[1] != channels:
            x = x.mean(1, keepdim=True) if channels == 1 else x[:, :1].expand(-1, channels, -1, -1)
        if x.shape[-1] != image_size or x.shape[-2] != image_size:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True,
                              align_corners=False).clamp(-1, 1)
        return x.contiguous()
    return prepare


def domain_feature_set(dataset: str, device=None, data_root: str | None = None, cache_dir: str | None = None,
                       cfg: ClassifierConfig = ClassifierConfig()) -> FeatureSet:
    """FeatureSet ``domain-<dataset>``: penultimate features, logits for the Inception Score."""
    model, info = load_or_train(dataset, cfg, cache_dir, data_root)
    device = torch.device(device or "cpu")
    model = model.to(device)

    def fn(x):
        return model.features(x.to(device))

    def logits_fn(x):
        return model(x.to(device))
    prepare = domain_prepare(model.body[0].in_channels, cfg.image_size)
    return FeatureSet(f"domain-{dataset}", FEATURE_DIM, fn, prepare, logits_fn=logits_fn, batch_size=1024,
                      tag=classifier_key(dataset, cfg, data_root), info=info)
