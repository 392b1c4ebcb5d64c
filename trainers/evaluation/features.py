"""Feature sets for sample-quality metrics: a named extractor with a stable name that reports
print, and the image conversions every extractor shares.

    fs = get_feature_set("domain", dataset="fashion_mnist")   # trainers/evaluation/feature_sets.py
    feats = fs.features(images)                               # np.float64 (N, fs.dim)

Images are uint8 (N, H, W, C) in [0, 255] or float (N, C, H, W) in [-1, 1] (numpy or torch).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch


@dataclass
class FeatureSet:
    """A named feature extractor: ``fn`` maps a float batch to (B, dim); ``logits_fn`` (optional)
    maps the same batch to class logits (used for the Inception Score), or ``head`` (optional)
    maps the features to them (one network pass for both)."""

    name: str
    dim: int
    fn: Callable[[torch.Tensor], torch.Tensor]
    prepare: Callable[[object], torch.Tensor]
    logits_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    head: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    batch_size: int = 256
    tag: str = ""                               # identifies the weights, for cache keys
    info: dict = field(default_factory=dict)    # e.g. the domain classifier's test accuracy

    def _run(self, images, fn) -> np.ndarray:
        out = []  # prepare per batch: 299x299 Inception inputs of a whole set would not fit in memory
        with torch.no_grad():
            for lo in range(0, len(images), self.batch_size):
                x = self.prepare(images[lo:lo + self.batch_size])
                out.append(fn(x).detach().double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim))

    @property
    def has_logits(self) -> bool:
        return self.logits_fn is not None or self.head is not None

    def features(self, images) -> np.ndarray:
        """float64 (N, dim) features."""
        return self._run(images, self.fn)

    def logits(self, images) -> np.ndarray:
        """float64 (N, classes) logits; raises if this feature set has no classifier head."""
        if self.head is not None:
            return self.head_logits(self.features(images))
        if self.logits_fn is None:
            raise ValueError(f"feature set {self.name!r} has no logits (the Inception Score needs a classifier "
                             "head: the domain set, inception-clean-fid or inception-random)")
        return self._run(images, self.logits_fn)

    def features_and_logits(self, images) -> tuple[np.ndarray, np.ndarray | None]:
        """Features and logits (None without a head), with one network pass when the set has a ``head``."""
        feats = self.features(images)
        if self.head is not None:
            return feats, self.head_logits(feats)
        return feats, (self._run(images, self.logits_fn) if self.logits_fn is not None else None)

    def head_logits(self, feats: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor(feats, dtype=torch.float32)
            return self.head(x.to(next(self.head.parameters()).device)).double().cpu().numpy()


# --- input conversion ----------------------------------------------------------------------

def to_float_nchw(images) -> torch.Tensor:
    """float32 (N, C, H, W) in [-1, 1] from uint8 NHWC or float NCHW (numpy or torch)."""
    x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
    if x.ndim == 3:  # (N, H, W) grey
        x = x[:, None] if x.dtype != torch.uint8 else x[..., None]
    if x.ndim != 4:
        raise ValueError(f"expected a batch of images (4-d), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()
    return x.float().clamp(-1.0, 1.0)


def to_uint8_nhwc(images) -> np.ndarray:
    """uint8 (N, H, W, C) in [0, 255]; floats in [-1, 1] are rounded as when saved to PNG."""
    if not torch.is_tensor(images):
        images = np.asarray(images)
        if images.dtype == np.uint8:
            return images[..., None] if images.ndim == 3 else images
    x = to_float_nchw(images)
    return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
