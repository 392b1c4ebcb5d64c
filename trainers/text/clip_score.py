"""CLIP score of a text run's samples: ``100 * max(cos(image embedding, caption embedding), 0)``,
averaged over the samples (Hessel et al. 2021, w = 1 as in text-to-image papers' tables).

It needs a CLIP image tower, so it is measured only when the run's text encoder is a CLIP model
(``clip-l14`` / ``clip-b32``) whose full weights load here (HF cache or ``$DTR_CLIP_DIR``); otherwise
the result says why it was skipped (``clip_score`` None, ``clip_score_note``).  Offline runs with
the MiniLM encoder always skip it: there are no CLIP weights on PyPI-only machines.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from trainers.text.conditioning import is_text_model, sample_captions
from trainers.text.encoders import clip_source, encoder_spec

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@lru_cache(maxsize=2)
def _clip(source: str, device: str):
    from transformers import CLIPModel, CLIPTokenizer
    return CLIPTokenizer.from_pretrained(source), CLIPModel.from_pretrained(source).to(device).eval()


def clip_available(encoder: str, device) -> tuple[str | None, str]:
    """``(source, note)``: where the CLIP weights load from, or None and why the score is skipped."""
    spec = encoder_spec(encoder)
    if spec.kind != "clip":
        return None, (f"CLIP score skipped: text_encoder={encoder} is not CLIP, and no CLIP image tower is "
                      "available to score with (use clip-l14 / clip-b32 where CLIP weights exist)")
    source = clip_source(spec)
    try:
        _clip(source, str(device))
    except (OSError, ImportError, ValueError) as err:
        return None, f"CLIP score skipped: CLIP weights {source!r} did not load ({type(err).__name__}: {err})"
    return source, f"CLIP score: {source}, 100*max(cos, 0) of image and caption embeddings"


@torch.no_grad()
def clip_score(images: torch.Tensor, captions: list[str], source: str, device, batch: int = 64) -> np.ndarray:
    """Per-image CLIP scores of images (N, C, H, W) in [-1, 1] (grey is repeated to RGB) and their captions."""
    tokenizer, model = _clip(source, str(device))
    side = int(model.config.vision_config.image_size)
    mean = torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1)
    out = []
    for lo in range(0, len(images), batch):
        x = (images[lo:lo + batch].float().to(device).clamp(-1, 1) + 1) / 2
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        x = F.interpolate(x, size=(side, side), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        text = tokenizer(list(captions[lo:lo + batch]), padding=True, truncation=True, max_length=77,
                         return_tensors="pt")
        emb = model(input_ids=text["input_ids"].to(device), attention_mask=text["attention_mask"].to(device),
                    pixel_values=(x - mean) / std)
        cos = F.cosine_similarity(emb.image_embeds.float(), emb.text_embeds.float(), dim=-1)
        out.append((100.0 * cos.clamp(min=0)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def sample_clip_scores(model, cfg, images: torch.Tensor, labels, device) -> np.ndarray | None:
    """One rank's share of an evaluation: per-sample CLIP scores, or None (not a text run, or no CLIP)."""
    if not is_text_model(model):
        return None
    source, _ = clip_available(cfg.text_encoder, device)
    return None if source is None else clip_score(images, sample_captions(cfg, labels), source, device)


def clip_summary(model, cfg, shares: list, device) -> dict:
    """``clip_score`` (mean over the gathered samples, or None) and ``clip_score_note`` of a text run."""
    if not is_text_model(model):
        return {}
    source, note = clip_available(cfg.text_encoder, device)
    if source is None or any(s is None for s in shares):
        return {"clip_score": None, "clip_score_note": note}
    return {"clip_score": float(np.concatenate(shares).mean()), "clip_score_note": note}
