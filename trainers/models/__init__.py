"""Denoisers with optional Denoising Task Routing: DiT (+ Switch-DiT / learned window), the
text-conditional DiT and the ADM UNet; one registry and builder, and the DiT FLOP counter."""
from torch import nn

from .adm import ADM_CONFIGS, ADM_models, ADMUNet, build_adm
from .dit import DIT_SIZES, DiT, DiT_models, DiTBlock, resolve_mask_table
from .dit import build_model as build_dit
from .dit_text import TextDiT, TextDiT_models, build_text_dit
from .flops import forward_macs, gflops, measured_macs

MODEL_NAMES = (*DiT_models, *TextDiT_models, *ADM_models)


def build_model(
    name: str,
    *,
    input_size: int,
    in_channels: int,
    num_classes: int,
    learn_sigma: bool = True,
    routing=None,
    **kwargs,
) -> nn.Module:
    """Build a registered model by name ("DiT-B/2", "DiT-B/2-text", "ADM-ImageNet64", "ADM-T", ...).

    ``routing`` is a RoutingSpec (or its dict / kind string), a mask tensor (DiT only) or None;
    ``text_encoder`` (kwargs) sets a text model's context width and is ignored by the others.
    """
    text_encoder = kwargs.pop("text_encoder", None)
    if name in TextDiT_models:
        return build_text_dit(name, input_size=input_size, in_channels=in_channels, num_classes=num_classes,
                              learn_sigma=learn_sigma, routing=routing, text_encoder=text_encoder, **kwargs)
    if name in ADM_models:
        return build_adm(name, input_size=input_size, in_channels=in_channels, num_classes=num_classes,
                         learn_sigma=learn_sigma, routing=routing, **kwargs)
    if name not in DiT_models:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    return build_dit(name, input_size=input_size, in_channels=in_channels, num_classes=num_classes,
                     learn_sigma=learn_sigma, routing=routing, **kwargs)


__all__ = [
    "ADMUNet",
    "ADM_CONFIGS",
    "ADM_models",
    "DIT_SIZES",
    "DiT",
    "DiTBlock",
    "DiT_models",
    "MODEL_NAMES",
    "TextDiT",
    "TextDiT_models",
    "build_adm",
    "build_model",
    "build_text_dit",
    "forward_macs",
    "gflops",
    "measured_macs",
    "resolve_mask_table",
]
