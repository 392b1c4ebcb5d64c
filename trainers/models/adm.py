"""ADM UNet (Dhariwal & Nichol 2021, "guided diffusion") with optional Denoising Task Routing.

Architecture: a UNet of ResBlocks (timestep embedding through scale-shift GroupNorm, dropout,
zero-initialised output conv, 1x1 skip when the width changes, optional up/down sampling inside
the ResBlock) and self-attention blocks (GroupNorm, 1x1 qkv, "new order" head split, zero-
initialised output projection) at configurable resolutions; GroupNorm32 computed in float32;
label embedding added to the timestep embedding, with a null class for classifier-free guidance.

Routing (docs/routing.md, routing in the ADM UNet, DTR App. A.1): in every ResBlock and every attention block the mask
row of the sample's timestep multiplies the output of the block's (input) GroupNorm, before
anything reads it, and the block keeps its residual form ``out = skip(x) + Block(...)``. The mask
has the GroupNorm's channel count C (for a decoder ResBlock that is the concatenation of the
upsampled path and the skip), so every distinct C has its own table ``spec.mask_table(T, C, n_C)``:
shared by the n_C blocks of that width for DTR / CDTR / ERCDT, one per block for R-TR and MaxRoaming
(whose tables trainers/routing/roaming.py re-draws in place during training). The
tables are persistent buffers (``routing_tables.c{C}``); they add no parameters. The inner
GroupNorm of a ResBlock (the scale-shift one) is not masked.

Forward contract as DiT: ``forward(x (N,C,H,W), t (N,) int on the 1000-grid, y (N,) or None)``.
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .embeddings import LabelEmbedder, timestep_embedding


class GroupNorm32(nn.GroupNorm):
    """GroupNorm with 32 groups, computed in float32."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__(min(32, channels), channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


def zero_module(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _apply_mask(h: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
    """Multiply (N, C, ...) activations by (N, C) mask rows."""
    if m is None:
        return h
    return h * m.to(h.dtype).view(*m.shape, *([1] * (h.ndim - 2)))


class Routed(nn.Module):
    """A block whose GroupNorm output is masked; ``route = (C, index)`` set by the model."""

    route: tuple[int, int] | None = None

    def mask(self, masks: dict | None) -> torch.Tensor | None:
        if masks is None or self.route is None:
            return None
        rows = masks[self.route[0]]  # (R, N, C)
        return rows[self.route[1] if rows.shape[0] > 1 else 0]


class Downsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or channels
        self.op = (nn.Conv2d(channels, out_channels, 3, stride=2, padding=1) if use_conv
                   else nn.AvgPool2d(kernel_size=2, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or channels
        self.conv = nn.Conv2d(channels, out_channels, 3, padding=1) if use_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return x if self.conv is None else self.conv(x)


class ResBlock(Routed):
    """GN -> [mask] -> SiLU -> (up/down) -> conv; + emb (scale-shift norm); GN -> SiLU -> dropout
    -> zero conv; plus the skip."""

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: int | None = None,
                 use_scale_shift_norm: bool = True, up: bool = False, down: bool = False):
        super().__init__()
        self.channels, self.out_channels = channels, out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_norm = GroupNorm32(channels)
        self.in_conv = nn.Conv2d(channels, self.out_channels, 3, padding=1)
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * self.out_channels if use_scale_shift_norm else self.out_channels))
        self.out_norm = GroupNorm32(self.out_channels)
        self.out_rest = nn.Sequential(nn.SiLU(), nn.Dropout(p=dropout),
                                      zero_module(nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1)))
        self.skip = (nn.Identity() if self.out_channels == channels
                     else nn.Conv2d(channels, self.out_channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor, masks: dict | None = None) -> torch.Tensor:
        h = F.silu(_apply_mask(self.in_norm(x), self.mask(masks)))
        if self.updown:
            h, x = self.h_upd(h), self.x_upd(x)
        h = self.in_conv(h)
        e = self.emb_layers(emb).to(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_norm(h) * (1 + scale) + shift
        else:
            h = self.out_norm(h + e)
        return self.skip(x) + self.out_rest(h)


class AttentionBlock(Routed):
    """Spatial self-attention: GN -> [mask] -> 1x1 qkv -> multi-head attention -> zero 1x1 proj; residual."""

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1):
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(f"channels {channels} not divisible by head channels {num_head_channels}")
            self.num_heads = channels // num_head_channels
        self.channels = channels
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None, masks: dict | None = None) -> torch.Tensor:
        n, c, *spatial = x.shape
        flat = x.reshape(n, c, -1)
        qkv = self.qkv(_apply_mask(self.norm(flat), self.mask(masks)))  # (N, 3C, L)
        q, k, v = (z.reshape(n, self.num_heads, c // self.num_heads, -1).transpose(2, 3)
                   for z in qkv.chunk(3, dim=1))  # "new order": split q, k, v first, then heads
        a = F.scaled_dot_product_attention(q, k, v)  # (N, H, L, ch)
        a = a.transpose(2, 3).reshape(n, c, -1)
        return (flat + self.proj_out(a)).reshape(n, c, *spatial)


class EmbedSequential(nn.Sequential):
    """Passes the timestep embedding and the mask rows to the blocks that take them."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, masks: dict | None = None) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb, masks) if isinstance(layer, Routed) else layer(x)
        return x


class RoutingTables(nn.Module):
    """One persistent mask-table buffer ``c{C}`` of shape (1 or n_C, T, C) per routed width C."""

    def __init__(self, tables: dict[int, torch.Tensor]):
        super().__init__()
        self.widths = sorted(tables)
        for c in self.widths:
            self.register_buffer(f"c{c}", tables[c], persistent=True)

    def table(self, channels: int) -> torch.Tensor:
        return getattr(self, f"c{channels}")

    def rows(self, t: torch.Tensor) -> dict[int, torch.Tensor]:
        """Mask rows of timesteps t: {C: (R, N, C)}."""
        out = {}
        for c in self.widths:
            table = self.table(c)
            out[c] = table[:, t.long().to(table.device)]
        return out


def _resolve_spec(routing):
    if routing is None:
        return None
    from trainers.routing.spec import RoutingSpec

    if isinstance(routing, str):
        routing = RoutingSpec(kind=routing)
    elif isinstance(routing, dict):
        routing = RoutingSpec.from_dict(routing)
    if not isinstance(routing, RoutingSpec):
        raise TypeError(f"ADM routing must be a RoutingSpec, its dict, a kind string or None, got {type(routing)}")
    if routing.learned:
        raise ValueError(f"routing kind {routing.kind!r} is implemented for DiT only; ADM supports the table kinds")
    return routing if routing.active else None


class ADMUNet(nn.Module):
    """Guided-diffusion UNet: forward(x (N,C,H,W), t (N,) int 1000-grid, y (N,) or None) -> (N, out_channels, H, W).

    ``attention_resolutions`` are feature-map sides (e.g. 32, 16, 8 for a 64 px model).
    ``num_classes == 1`` builds an unconditional model; otherwise label ``num_classes`` is the
    CFG null class, used for y=None and for dropped labels (probability ``class_dropout_prob``).
    """

    def __init__(
        self,
        input_size: int = 64,
        in_channels: int = 3,
        model_channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 3, 4),
        num_res_blocks: int = 3,
        attention_resolutions: Sequence[int] = (32, 16, 8),
        num_heads: int = 4,
        num_head_channels: int = 64,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = True,
        resblock_updown: bool = True,
        conv_resample: bool = True,
        class_dropout_prob: float = 0.1,
        num_classes: int = 1,
        learn_sigma: bool = True,
        routing=None,
        num_timesteps: int = 1000,
    ):
        super().__init__()
        levels = len(channel_mult)
        if input_size % 2 ** (levels - 1):
            raise ValueError(f"input_size {input_size} is not divisible by 2^{levels - 1} "
                             f"(channel_mult {channel_mult})")
        self.input_size, self.in_channels, self.model_channels = input_size, in_channels, model_channels
        self.channel_mult, self.num_res_blocks = tuple(channel_mult), num_res_blocks
        self.attention_resolutions = tuple(attention_resolutions)
        self.num_classes, self.learn_sigma, self.num_timesteps = num_classes, learn_sigma, num_timesteps
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.conditional = num_classes > 1
        self.class_dropout_prob = class_dropout_prob if self.conditional else 0.0
        attention_ds = {input_size // r for r in attention_resolutions if r > 0 and input_size % r == 0}

        emb_dim = model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = LabelEmbedder(num_classes, emb_dim, class_dropout_prob) if self.conditional else None
        res = partial(ResBlock, emb_channels=emb_dim, dropout=dropout, use_scale_shift_norm=use_scale_shift_norm)
        attn = partial(AttentionBlock, num_heads=num_heads, num_head_channels=num_head_channels)

        ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        skip_chans, ds = [ch], 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, out_channels=int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_ds:
                    layers.append(attn(ch))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_chans.append(ch)
            if level != levels - 1:
                self.input_blocks.append(EmbedSequential(
                    res(ch, out_channels=ch, down=True) if resblock_updown else Downsample(ch, conv_resample)))
                skip_chans.append(ch)
                ds *= 2
        self.middle_block = EmbedSequential(res(ch), attn(ch), res(ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_chans.pop(), out_channels=int(model_channels * mult))]
                ch = int(model_channels * mult)
                if ds in attention_ds:
                    layers.append(attn(ch))
                if level and i == num_res_blocks:
                    layers.append(res(ch, out_channels=ch, up=True) if resblock_updown
                                  else Upsample(ch, conv_resample))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(),
                                 zero_module(nn.Conv2d(ch, self.out_channels, 3, padding=1)))

        # -- routing: one table per distinct GroupNorm width, R-TR one per block
        self.routing = _resolve_spec(routing)
        self.routing_tables = self._build_tables(self.routing)

    # every routed block, in forward order
    def routed_blocks(self) -> list[Routed]:
        return [m for m in self.modules() if isinstance(m, Routed)]

    @staticmethod
    def _norm_width(block: Routed) -> int:
        return block.channels

    def _build_tables(self, spec) -> RoutingTables | None:
        blocks = self.routed_blocks()
        for block in blocks:
            block.route = None
        if spec is None:
            return None
        count: dict[int, int] = {}
        for block in blocks:
            c = self._norm_width(block)
            block.route = (c, count.get(c, 0))
            count[c] = count.get(c, 0) + 1
        device = next(self.parameters()).device
        if device.type == "meta":  # shape-only build (parameter counts): skip drawing the tables
            return RoutingTables({c: torch.empty(n if spec.kind in ("random", "maxroaming") else 1, self.num_timesteps, c,
                                                 device=device) for c, n in count.items()})
        with torch.device("cpu"):
            tables = {c: spec.mask_table(self.num_timesteps, c, n) for c, n in count.items()}
        return RoutingTables({c: tab.to(device) for c, tab in tables.items()})

    @property
    def routed(self) -> bool:
        return self.routing_tables is not None

    @property
    def routing_masks(self) -> torch.Tensor | None:
        """The table of the first routed block (width ``model_channels``), (1 or R, T, C), for the mask image."""
        if self.routing_tables is None:
            return None
        return self.routing_tables.table(self.routed_blocks()[0].route[0])

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                force_drop_ids: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(t, self.model_channels).to(self.time_embed[0].weight.dtype))
        if self.label_emb is not None:
            if y is None:
                y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            emb = emb + self.label_emb(y, force_drop_ids)
        masks = None if self.routing_tables is None else self.routing_tables.rows(t)
        h, skips = x, []
        for block in self.input_blocks:
            h = block(h, emb, masks)
            skips.append(h)
        h = self.middle_block(h, emb, masks)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, masks)
        return self.out(h)


# name -> UNet config (docs/routing.md, routing in the ADM UNet; the guided-diffusion 64 px settings)
ADM_CONFIGS = {
    # ImageNet 64 (ADM paper): 192 ch, mult 1,2,3,4, 3 res blocks, attention at 32,16,8 with 64-channel heads
    "ADM-ImageNet64": dict(model_channels=192, channel_mult=(1, 2, 3, 4), num_res_blocks=3,
                           attention_resolutions=(32, 16, 8), num_head_channels=64, dropout=0.1),
    # FFHQ 64: 128 ch, mult 1,2,3,4, 3 res blocks, attention at 32,16,8
    "ADM-FFHQ64": dict(model_channels=128, channel_mult=(1, 2, 3, 4), num_res_blocks=3,
                       attention_resolutions=(32, 16, 8), num_head_channels=64, dropout=0.1),
    # tiny CPU size for tests and laptops (32x32 grey Fashion-MNIST): attention at the 16 px level
    "ADM-T": dict(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(16,),
                  num_head_channels=32, dropout=0.0),
}

ADM_models = {name: partial(ADMUNet, **cfg) for name, cfg in ADM_CONFIGS.items()}


def build_adm(name: str, *, input_size: int, in_channels: int, num_classes: int, learn_sigma: bool = True,
              routing=None, **kwargs) -> ADMUNet:
    if name not in ADM_models:
        raise ValueError(f"unknown ADM model {name!r}; valid names: {', '.join(ADM_models)}")
    return ADM_models[name](input_size=input_size, in_channels=in_channels, num_classes=num_classes,
                            learn_sigma=learn_sigma, routing=routing, **kwargs)


__all__ = ["ADMUNet", "ADM_CONFIGS", "ADM_models", "AttentionBlock", "GroupNorm32", "ResBlock", "build_adm"]
