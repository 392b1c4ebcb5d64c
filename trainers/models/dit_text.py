"""Text-conditional DiT (DTR paper App. C): caption tokens condition every block by cross-attention.

Each block is DiT's adaLN-Zero block with a multi-head cross-attention layer between self-attention
and the MLP: queries from the (parameter-free LayerNorm'ed) image tokens, keys and values from the
caption's token embeddings (text tokens as keys/values, the same qkv/proj design as self-attention:
one Linear for q, one for k and v, an output projection), padded text tokens masked out.  The
output projection starts at zero, as adaLN-Zero's gates do, so a fresh block ignores the caption.
The adaLN-Zero modulation (shift, scale, gate of self-attention and MLP, and the final layer's)
comes from the timestep embedding only: there is no class embedding.  The encoder's tokens
(``context_dim`` wide, e.g. 384 for MiniLM, 768 for CLIP ViT-L/14) enter through one shared Linear
``context_embedder`` to the hidden size.

Routing (docs/routing.md, docs/text_conditional.md) acts on the block as in the class-conditional
DiT: ``out = x + Block(m * x)`` where ``Block`` is self-attention -> cross-attention -> MLP, so all
three sublayers read the masked input (the cross-attention's queries are masked image tokens; its
keys and values are the caption tokens, which are not routed), and the masked-out channels pass
the block unchanged.  Learned routings (Switch-DiT, learned window) work as for DiT.

    model = TextDiT(input_size=32, in_channels=1, depth=4, hidden_size=128, num_heads=4, patch_size=4)
    eps = model(x, t, tokens (N, L, context_dim), mask (N, L) bool)

Condition ids, caption dropout and classifier-free guidance live in trainers/text/conditioning.py
(the null condition is the empty caption's embedding).  Registry names: ``DiT-{size}/{patch}-text``.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from trainers.config_checks import DIT_PATCHES, DIT_SIZES

from .dit import DiT, DiTBlock, modulate


class CrossAttention(nn.Module):
    """Multi-head attention of image tokens (queries) over text tokens (keys, values)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        n, l, d = x.shape
        heads, width = self.num_heads, d // self.num_heads
        q = self.q(x).reshape(n, l, heads, width).transpose(1, 2)
        k, v = self.kv(context).reshape(n, context.shape[1], 2, heads, width).permute(2, 0, 3, 1, 4)
        keep = None if mask is None else mask.to(torch.bool)[:, None, None, :]  # (N, 1, 1, S): True = attend
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        return self.proj(out.transpose(1, 2).reshape(n, l, d))


class TextDiTBlock(DiTBlock):
    """adaLN-Zero block with cross-attention after self-attention; ``m`` gates what all three read."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__(hidden_size, num_heads, mlp_ratio)
        self.norm_cross = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.cross_attn = CrossAttention(hidden_size, num_heads)

    def forward(self, x, c, context, context_mask, m=None):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=1)
        mask = None if m is None else m.to(x.dtype)
        h = x if mask is None else mask * x
        h = h + gate1.unsqueeze(1) * self.attn(modulate(self.norm1(h), shift1, scale1))
        h = h + self.cross_attn(self.norm_cross(h), context, context_mask)
        h = h + gate2.unsqueeze(1) * self.mlp(modulate(self.norm2(h), shift2, scale2))
        return h if mask is None else h + (1 - mask) * x


class TextDiT(DiT):
    """DiT conditioned on caption tokens: ``forward(x, t, context (N, L, context_dim), context_mask (N, L))``."""

    text_conditional = True

    def __init__(self, *, context_dim: int = 384, caption_dropout_prob: float = 0.1, num_classes: int = 1,
                 **kwargs):
        if num_classes != 1:
            raise ValueError(f"a text-conditional DiT is conditioned on captions, not classes (num_classes={num_classes})")
        kwargs.pop("class_dropout_prob", None)
        super().__init__(num_classes=1, class_dropout_prob=0.0, **kwargs)
        self.context_dim, self.caption_dropout_prob = int(context_dim), float(caption_dropout_prob)
        self.context_embedder = nn.Linear(self.context_dim, self.hidden_size)
        self.blocks = nn.ModuleList([TextDiTBlock(self.hidden_size, self.num_heads, self.mlp_ratio)
                                     for _ in range(self.depth)])
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's init (xavier linears, adaLN-Zero, zero final layer) plus zero cross-attention output."""
        super().initialize_weights()
        if not hasattr(self, "context_embedder"):  # DiT.__init__ runs this before the text layers exist
            return
        for block in self.blocks:
            nn.init.zeros_(block.cross_attn.proj.weight)
            nn.init.zeros_(block.cross_attn.proj.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        if context is None:
            raise ValueError("the text-conditional DiT needs caption token embeddings (call it through "
                             "trainers.text.conditioning.TextConditioner with caption ids)")
        ctx = self.context_embedder(context.to(self.context_embedder.weight.dtype))
        h = self.x_embedder(x) + self.pos_embed
        t_emb = c = self.t_embedder(t)  # adaLN from the timestep only
        state = None if self.router is None else self.router.begin(t, t_emb)
        table = self.block_masks(t) if state is None else None
        for i, block in enumerate(self.blocks):
            if state is not None:
                m = self.router.block_mask(i, h, state)
            else:
                m = None if table is None else table[i]
            h = block(h, c, ctx, context_mask, m)
        if state is not None:
            aux = self.router.aux(t, state, self.t_embedder) if self.training else None
            self.aux_loss, self.prior_loss = (None, None) if aux is None else aux
        return self.unpatchify(self.final_layer(h, c))


TextDiT_models = {
    f"DiT-{size}/{p}-text": partial(TextDiT, depth=d, hidden_size=h, num_heads=n, patch_size=p)
    for size, (d, h, n) in DIT_SIZES.items()
    for p in DIT_PATCHES[size]
}


def build_text_dit(name: str, *, input_size: int, in_channels: int, num_classes: int = 1, learn_sigma: bool = True,
                   routing=None, text_encoder: str | None = None, **kwargs) -> TextDiT:
    """Build a registered text DiT ("DiT-B/2-text"); its context width is ``text_encoder``'s token width."""
    from trainers.text.encoders import DEFAULT_ENCODER, encoder_spec
    if name not in TextDiT_models:
        raise ValueError(f"unknown text model {name!r}; valid names: {', '.join(TextDiT_models)}")
    kwargs.setdefault("context_dim", encoder_spec(text_encoder or DEFAULT_ENCODER).dim)
    return TextDiT_models[name](input_size=input_size, in_channels=in_channels, num_classes=num_classes,
                                learn_sigma=learn_sigma, routing=routing, **kwargs)
