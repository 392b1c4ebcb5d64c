"""Caption ids -> token embeddings, before the text-conditional DiT's forward.

The trainer, the sampler and classifier-free guidance all speak in integer condition ids, as for
class-conditional models; :class:`TextConditioner` stands in front of a text DiT and turns ids into
the caption bank's token embeddings and masks:

* training (``text_conditioner(cfg, model)``): ids are rows of the train split's bank; with
  probability ``model.caption_dropout_prob`` (0.1) a caption is replaced by the empty caption "",
  drawn from the torch RNG exactly as DiT's label dropout (the loop seeds it per step and rank);
* sampling (``sampling_model(model, cfg)``): id ``i`` is the ``i``-th held-out item's caption, so
  sample ``i`` of an evaluation (``i mod n``) is a function of (seed, i) on every rank, and the CFG
  null id (``num_classes``) is the empty caption.

``cfg`` is a run config (duck-typed: this package sits below trainers.config).
"""
from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import torch

from trainers.data.captioned import CAPTIONED_DATASETS, HELD_OUT, caption_table
from trainers.text.bank import caption_bank

NULL_ROW = 0  # the empty caption's row in every bank


def is_text_model(model) -> bool:
    return bool(getattr(model, "text_conditional", False))


def caption_source(cfg) -> tuple[str, str | None]:
    """``(captioned data set, root)`` a run's captions come from: its own data set, or the source a
    latent cache was encoded from (``dataset=latents``)."""
    if cfg.dataset in CAPTIONED_DATASETS:
        return cfg.dataset, cfg.data_root or None
    if cfg.dataset == "latents" and cfg.data_root:
        from trainers.data.latent_cache import read_latent_meta
        source = read_latent_meta(cfg.data_root).get("source") or {}
        if source.get("dataset") in CAPTIONED_DATASETS:
            return str(source["dataset"]), source.get("root")
    raise ValueError(f"a text-conditional model needs captioned data ({', '.join(CAPTIONED_DATASETS)}, or a latent "
                     f"cache encoded from one); got dataset={cfg.dataset!r}")


class TextConditioner:
    """Calls ``model(x, t, tokens, mask)`` for integer condition ids ``y``; every other attribute
    (parameters, eval, train, in_channels, ...) is the model's.  ``order`` maps ids to bank rows
    (None: ids are bank rows); id ``num_classes`` is the null condition (the empty caption)."""

    def __init__(self, model, bank, order: np.ndarray | None = None):
        self.model, self.bank = model, bank
        self.order = None if order is None else torch.as_tensor(np.asarray(order), dtype=torch.long)
        self.num_classes = len(bank) if order is None else len(order)

    def __getattr__(self, name):  # only for names this object does not have
        if name in ("model", "bank", "order") or name.startswith("__"):
            raise AttributeError(name)  # (copy / pickle probe an object before __init__ has run)
        return getattr(self.model, name)

    def rows(self, y: torch.Tensor) -> torch.Tensor:
        """Bank rows of condition ids (CPU)."""
        ids = y.detach().cpu().long()
        null = ids == self.num_classes
        ids = torch.where(null, 0, ids)
        rows = ids if self.order is None else self.order[ids]
        return torch.where(null, NULL_ROW, rows)

    def drop(self, y: torch.Tensor, force_drop_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Caption dropout, drawn as DiT's ``LabelEmbedder.token_drop``: in training each id becomes the
        null id with probability ``caption_dropout_prob`` (torch RNG); ``force_drop_ids`` (1 = drop) overrides."""
        p = float(getattr(self.model, "caption_dropout_prob", 0.0))
        if not ((self.model.training and p > 0) or force_drop_ids is not None):
            return y
        drop = (torch.rand(y.shape[0], device=y.device) < p) if force_drop_ids is None else (
            force_drop_ids.to(y.device) == 1)
        return torch.where(drop, torch.full_like(y, self.num_classes), y)

    def __call__(self, x, t, y=None, force_drop_ids=None):
        if y is None:
            y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
        tokens, mask = self.bank.lookup(self.rows(self.drop(y, force_drop_ids)))
        dtype = next(self.model.parameters()).dtype
        return self.model(x, t, tokens.to(x.device, dtype), mask.to(x.device))


def text_conditioner(cfg, model) -> TextConditioner | None:
    """The training-time conditioner of a text model (None for any other model)."""
    if not is_text_model(model):
        return None
    dataset, root = caption_source(cfg)
    return TextConditioner(model, caption_bank(dataset, root, cfg.text_encoder))  # train ids are bank rows


@lru_cache(maxsize=4)
def held_out(dataset: str, root: str | None, encoder: str):
    """``(bank, order, classes)`` of the held-out split: item ``i``'s unflipped caption's bank row and class."""
    table = caption_table(dataset, root, HELD_OUT[dataset])
    bank = caption_bank(dataset, root, encoder)
    return bank, bank.rows_of(table.captions)[table.rows[:, 0]], table.classes


def sampling_model(model, cfg):
    """``model`` as the sampler should call it: text models behind a held-out-caption conditioner."""
    if not is_text_model(model):
        return model
    bank, order, _ = held_out(*caption_source(cfg), cfg.text_encoder)
    return TextConditioner(model, bank, order)


def sample_captions(cfg, labels) -> list[str]:
    """The captions of sampled condition ids (a text run's evaluation labels)."""
    bank, order, _ = held_out(*caption_source(cfg), cfg.text_encoder)
    return [bank.captions[int(order[int(i)])] for i in labels]


def scoring_labels(cfg, model, labels):
    """Classes to score label accuracy against: a class model's labels, a text model's caption
    classes (Fashion-MNIST captions name their garment), or None (COCO)."""
    if not is_text_model(model):
        return labels
    classes = held_out(*caption_source(cfg), cfg.text_encoder)[2]
    return None if classes is None else classes[np.asarray(labels, dtype=np.int64)]


def caption_reference(dataset: str, root: str | None) -> tuple[str, str | None, str]:
    """``(dataset, root, split)`` of FID's real images for a captioned set: Fashion-MNIST's train
    images (the class-conditional runs' reference), MS-COCO's val2014 images; others unchanged."""
    if dataset == "fashion_mnist_captions":
        return "fashion_mnist", root, "train"
    if dataset == "coco_captions":
        return "image_folder", os.path.join(root or "", "val2014"), "train"
    return dataset, root, "train"
