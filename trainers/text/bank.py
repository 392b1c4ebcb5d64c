"""The caption bank: every caption of a data set encoded once by the frozen text encoder, on disk.

    bank = caption_bank("fashion_mnist_captions", None, "minilm")   # builds it on first use
    tokens, mask = bank.lookup(torch.tensor([0, 5]))                 # (2, L, D) float32, (2, L) bool

One bank holds the unique captions of the train split and of the held-out split: first the train
table's captions in their order (so a train caption id is its bank row; row 0 = ""), then the
held-out captions not seen in training (``bank.rows_of(captions)`` maps any caption list to rows).
A bank is a directory (format ``dtr-text-bank/1``): ``tokens.npy`` float16 (U, L, D) token
embeddings, ``mask.npy`` bool (U, L) attention masks, ``captions.json`` (the U captions) and
``manifest.json`` (format, encoder name / source / width / length, caption count and the sha256
of the caption list), written last, so a bank without a manifest is incomplete.
It lives next to the data: ``<data_root>/text_cache/<encoder>-L<tokens>/`` when the data root is
writable, else ``<cache>/text_cache/<dataset>[-<root hash>]/<encoder>-L<tokens>/``.  A bank whose manifest
names another encoder or another caption list (the captions changed) is rebuilt; building holds a
file lock, so concurrent ranks and trials encode once.  Training reads the arrays memory-mapped and
never runs the encoder.  ``python -m trainers.text.bank --dataset coco_captions --data-root ROOT
--encoder clip-l14`` builds it ahead of a cluster run (on a GPU node).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from functools import lru_cache

import numpy as np
import torch

from trainers.data.captioned import CAPTIONED_DATASETS, HELD_OUT, caption_table
from trainers.files import atomic_path, atomic_write_json
from trainers.paths import cache_dir
from trainers.text.encoders import encoder_spec, load_encoder

FORMAT = "dtr-text-bank/1"
MANIFEST = "manifest.json"


class CaptionBank:
    """Token embeddings and masks of a data set's unique captions, row 0 the empty caption."""

    def __init__(self, path: str):
        self.path = path
        with open(os.path.join(path, MANIFEST), encoding="utf-8") as fh:
            self.manifest = json.load(fh)
        with open(os.path.join(path, "captions.json"), encoding="utf-8") as fh:
            self.captions = tuple(json.load(fh))
        self.tokens = np.load(os.path.join(path, "tokens.npy"), mmap_mode="r")
        self.mask = np.load(os.path.join(path, "mask.npy"), mmap_mode="r")
        count = int(self.manifest["count"])
        if self.tokens.shape[0] != count or self.mask.shape != self.tokens.shape[:2] or len(self.captions) != count:
            raise ValueError(f"caption bank {path} is inconsistent: tokens {self.tokens.shape}, mask {self.mask.shape}, "
                             f"{len(self.captions)} captions, manifest count {count}; delete it to rebuild")

    def __len__(self) -> int:
        return len(self.captions)

    def rows_of(self, captions) -> np.ndarray:
        """Bank rows of ``captions`` (every one must be in the bank)."""
        if not hasattr(self, "_index"):
            self._index = {c: i for i, c in enumerate(self.captions)}
        try:
            return np.array([self._index[c] for c in captions], dtype=np.int64)
        except KeyError as err:
            raise KeyError(f"caption {err.args[0]!r} is not in the bank {self.path}; delete it to rebuild") from None

    @property
    def encoder(self) -> str:
        return str(self.manifest["encoder"])

    def lookup(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``rows`` (N,) -> tokens float32 (N, L, D) and mask bool (N, L), on CPU."""
        idx = rows.detach().cpu().numpy().astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"caption id {int(idx.max())} outside the bank's {len(self)} captions ({self.path}); "
                             "the data and the bank do not belong together")
        return torch.from_numpy(np.asarray(self.tokens[idx], dtype=np.float32)), torch.from_numpy(
            np.asarray(self.mask[idx], dtype=bool))


def captions_sha256(captions) -> str:
    return hashlib.sha256("\n".join(captions).encode()).hexdigest()


def bank_dir(dataset: str, root: str | None, encoder: str) -> str:
    """Where the bank of (data set, root, encoder) lives (see the module docstring)."""
    leaf = encoder_spec(encoder).key
    if root and os.path.isdir(root) and os.access(root, os.W_OK):
        return os.path.join(root, "text_cache", leaf)
    tag = dataset + (f"-{hashlib.sha1(os.path.abspath(root).encode()).hexdigest()[:8]}" if root else "")
    return os.path.join(cache_dir(), "text_cache", tag, leaf)


def _is_current(path: str, encoder: str, captions) -> bool:
    try:
        with open(os.path.join(path, MANIFEST), encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError):
        return False
    spec = encoder_spec(encoder)
    return (manifest.get("format") == FORMAT and manifest.get("encoder") == encoder
            and manifest.get("max_tokens") == spec.max_tokens and manifest.get("dim") == spec.dim
            and manifest.get("captions_sha256") == captions_sha256(captions))


def write_bank(path: str, captions, encoder: str, *, device=None, log=print) -> str:
    """Encode ``captions`` with ``encoder`` into a bank directory at ``path`` (manifest last)."""
    spec = encoder_spec(encoder)
    os.makedirs(path, exist_ok=True)
    if os.path.exists(os.path.join(path, MANIFEST)):
        os.remove(os.path.join(path, MANIFEST))  # stale: the directory is incomplete until the new one
    t0 = time.perf_counter()
    encode = load_encoder(encoder, device)
    load_s = time.perf_counter() - t0
    tokens, mask = encode(list(captions))
    with atomic_path(os.path.join(path, "tokens.npy")) as tmp:
        np.save(tmp, tokens.numpy().astype(np.float16), allow_pickle=False)
    with atomic_path(os.path.join(path, "mask.npy")) as tmp:
        np.save(tmp, mask.numpy(), allow_pickle=False)
    atomic_write_json(os.path.join(path, "captions.json"), list(captions), indent=None)
    atomic_write_json(os.path.join(path, MANIFEST), {
        "format": FORMAT, "encoder": encoder, "source": spec.source, "dim": spec.dim, "max_tokens": spec.max_tokens,
        "count": len(captions), "captions_sha256": captions_sha256(captions), "dtype": "float16",
        "encoder_load_s": round(load_s, 2), "encode_s": round(time.perf_counter() - t0 - load_s, 2)})
    log(f"[text] encoded {len(captions)} captions with {encoder} into {path} "
        f"(load {load_s:.1f}s, encode {time.perf_counter() - t0 - load_s:.1f}s)")
    return path


def ensure_bank(path: str, captions, encoder: str, *, device=None) -> CaptionBank:
    """The bank at ``path`` for ``captions``, encoding it first when missing or stale."""
    from filelock import FileLock
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with FileLock(path.rstrip("/") + ".lock"):
        if not _is_current(path, encoder, captions):
            write_bank(path, captions, encoder, device=device)
    return CaptionBank(path)


def bank_captions(dataset: str, root: str | None) -> tuple:
    """The train split's captions, then the held-out split's that training does not have."""
    train = caption_table(dataset, root, "train").captions
    seen = set(train)
    return train + tuple(c for c in caption_table(dataset, root, HELD_OUT[dataset]).captions if c not in seen)


@lru_cache(maxsize=8)
def caption_bank(dataset: str, root: str | None, encoder: str) -> CaptionBank:
    """The (cached per process) bank of a captioned data set."""
    return ensure_bank(bank_dir(dataset, root, encoder), bank_captions(dataset, root), encoder)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.text.bank",
                                     description="Encode a captioned data set's train and held-out captions once.")
    parser.add_argument("--dataset", required=True, choices=CAPTIONED_DATASETS)
    parser.add_argument("--data-root", default="")
    parser.add_argument("--encoder", default="minilm")
    args = parser.parse_args(argv)
    try:
        bank = caption_bank(args.dataset, args.data_root or None, args.encoder)
        print(f"{len(bank)} captions -> {bank.path}")
    except Exception as err:  # one line, non-zero exit
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
