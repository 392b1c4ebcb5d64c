"""Diffusion Transformer (DiT, Peebles & Xie 2023) with optional Denoising Task Routing masks.

Module names follow the released DiT so its checkpoints load with ``load_state_dict``.
Routing (docs/routing.md, routing in a DiT block): each block computes ``out = x + Block(m * x)`` with ``m`` the
(N, 1, C) mask row of each sample's 1000-grid timestep; the final layer is not routed.
Learned routings (RoutingSpec kinds "learned" = Switch-DiT, "learned_window") replace the fixed
row by a module ``model.router`` (switch_routing.py, learned_window.py) with the same block forward.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from trainers.config_checks import DIT_PATCHES, DIT_SIZES

from .embeddings import LabelEmbedder, TimestepEmbedder, sincos_2d


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation of tokens (N, L, D) by per-sample (N, D) shift/scale."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class PatchEmbed(nn.Module):
    """(N, C, H, W) -> (N, H*W/p^2, D) tokens via a stride-p convolution."""

    def __init__(self, patch_size: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention: one qkv Linear (with bias), SDPA, output projection."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        assert dim % num_heads == 0, "hidden size must be divisible by the number of heads"
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, l, d = x.shape
        q, k, v = self.qkv(x).reshape(n, l, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(n, l, d))


class Mlp(nn.Module):
    """Linear -> GELU(tanh) -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block; ``m`` (broadcastable to x) gates what the sublayers read."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor, m: torch.Tensor | None = None) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=1)
        h = x if m is None else m.to(x.dtype) * x
        h = h + gate1.unsqueeze(1) * self.attn(modulate(self.norm1(h), shift1, scale1))
        h = h + gate2.unsqueeze(1) * self.mlp(modulate(self.norm2(h), shift2, scale2))
        return h if m is None else h + (1 - m.to(x.dtype)) * x


class FinalLayer(nn.Module):
    """LayerNorm + adaLN (shift, scale) + Linear D -> p*p*out_channels."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def build_router(routing, num_timesteps: int, hidden_size: int, depth: int) -> nn.Module | None:
    """The learned router of a RoutingSpec (or its dict / kind string), or None for table kinds."""
    from trainers.routing.spec import RoutingSpec

    if routing is None or isinstance(routing, torch.Tensor):
        return None
    spec = RoutingSpec.from_dict(routing) if isinstance(routing, dict) else (
        RoutingSpec(kind=routing) if isinstance(routing, str) else routing)
    if spec.kind == "learned":
        from .switch_routing import SwitchRouter

        return SwitchRouter(depth, hidden_size, num_timesteps, experts=spec.experts, top_k=spec.top_k,
                            prior_weight=spec.prior_weight, alpha=spec.alpha, seed=spec.seed)
    if spec.kind == "learned_window":
        from .learned_window import LearnedWindow

        return LearnedWindow(num_timesteps, hidden_size, beta=spec.beta, alpha=spec.alpha)
    return None


def resolve_mask_table(routing, num_tasks: int, channels: int, depth: int) -> torch.Tensor | None:
    """Turn ``routing`` (None, RoutingSpec, its dict/kind string, or a (T, C)/(R, T, C) tensor)
    into a float32 table of shape (1 or depth, T, C), or None for the plain model."""
    if routing is None:
        return None
    if isinstance(routing, (dict, str)):
        from trainers.routing.spec import RoutingSpec

        routing = RoutingSpec.from_dict(routing) if isinstance(routing, dict) else RoutingSpec(kind=routing)
    if isinstance(routing, torch.Tensor):
        table = routing
    else:
        with torch.device("cpu"):  # compute on CPU even inside a `with torch.device("meta")` build
            table = routing.mask_table(num_tasks, channels, depth)
    if table is None:
        return None
    table = torch.as_tensor(table, dtype=torch.float32)
    if table.ndim == 2:
        table = table.unsqueeze(0)
    if table.ndim != 3 or table.shape[0] not in (1, depth) or table.shape[1] != num_tasks or table.shape[2] != channels:
        raise ValueError(f"mask table shape {tuple(table.shape)} != (1 or {depth}, {num_tasks}, {channels})")
    return table


class DiT(nn.Module):
    """DiT denoiser: forward(x (N,C,H,W), t (N,) int 1000-grid, y (N,) or None) -> (N, out_channels, H, W).

    ``num_classes == 1`` builds an unconditional model (no label embedding). Otherwise label id
    ``num_classes`` is the CFG null class, used for y=None and for dropped labels.
    """

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        class_dropout_prob: float = 0.1,
        num_classes: int = 1000,
        learn_sigma: bool = True,
        routing=None,
        num_timesteps: int = 1000,
    ):
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not divisible by patch size {patch_size}")
        self.input_size, self.patch_size, self.in_channels = input_size, patch_size, in_channels
        self.hidden_size, self.depth, self.num_heads, self.mlp_ratio = hidden_size, depth, num_heads, mlp_ratio
        self.num_classes, self.learn_sigma, self.num_timesteps = num_classes, learn_sigma, num_timesteps
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.conditional = num_classes > 1
        self.class_dropout_prob = class_dropout_prob if self.conditional else 0.0
        self.num_patches = (input_size // patch_size) ** 2

        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob) if self.conditional else None
        # Fixed sin-cos table: a frozen Parameter (counted in the parameter count, as in DiT).
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList([DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)

        self.routing = None if isinstance(routing, torch.Tensor) else routing
        table = resolve_mask_table(routing, num_timesteps, hidden_size, depth)
        if table is not None:
            table = table.to(self.pos_embed.device)
        self.register_buffer("routing_masks", table, persistent=True)
        self.router = build_router(routing, num_timesteps, hidden_size, depth)
        self.aux_loss: torch.Tensor | None = None  # weighted prior loss of the last training forward
        self.prior_loss: torch.Tensor | None = None  # its unweighted value (Switch-DiT's JS divergence)
        self.initialize_weights()

    @property
    def routed(self) -> bool:
        return self.routing_masks is not None or self.router is not None

    def expert_usage(self, block: int | None = None) -> torch.Tensor:
        """Switch-DiT's expert-usage table (T, E) from the gates over all T (rows sum to k):
        ``block``'s top-k selections, or their mean over blocks when ``block`` is None."""
        if not hasattr(self.router, "expert_usage"):
            raise ValueError("expert_usage needs the learned (Switch-DiT) routing")
        return self.router.expert_usage(self.t_embedder, block)

    def initialize_weights(self) -> None:
        """DiT init: xavier linears, zero biases, adaLN-Zero, zero final linear, N(0, 0.02) embeddings."""

        def _basic(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

        self.apply(_basic)
        if not self.pos_embed.is_meta:
            grid = int(self.num_patches**0.5)
            with torch.no_grad():
                self.pos_embed.copy_(sincos_2d(self.hidden_size, grid).unsqueeze(0))
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.data.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for layer in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        if self.router is not None:
            self.router.initialize()  # zero experts / DTR start curve: the model starts as plain DiT / DTR

    def block_masks(self, t: torch.Tensor) -> list[torch.Tensor] | None:
        """Per-block (N, 1, C) mask rows for timesteps t (1000-grid), or None when unrouted."""
        if self.routing_masks is None:
            return None
        rows = self.routing_masks[:, t.long().to(self.routing_masks.device)]  # (R, N, C)
        return [rows[i if rows.shape[0] > 1 else 0].unsqueeze(1) for i in range(self.depth)]

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L, p*p*C) -> (N, C, H, W)."""
        n, p, c = x.shape[0], self.patch_size, self.out_channels
        g = self.input_size // p
        x = x.reshape(n, g, g, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(n, c, g * p, g * p)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor | None = None,
        force_drop_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = self.x_embedder(x) + self.pos_embed
        t_emb = c = self.t_embedder(t)
        if self.y_embedder is not None:
            if y is None:
                y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            c = c + self.y_embedder(y, force_drop_ids)
        if self.router is None:
            masks = self.block_masks(t)
            for i, block in enumerate(self.blocks):
                h = block(h, c, None if masks is None else masks[i])
            return self.unpatchify(self.final_layer(h, c))
        state = self.router.begin(t, t_emb)  # learned routing: the gate sees the timestep embedding only
        for i, block in enumerate(self.blocks):
            h = block(h, c, self.router.block_mask(i, h, state))
        aux = self.router.aux(t, state, self.t_embedder) if self.training else None
        self.aux_loss, self.prior_loss = (None, None) if aux is None else aux
        return self.unpatchify(self.final_layer(h, c))


# name -> (depth, hidden size, heads) and patch sizes: trainers/config_checks.py (the config validates names)

DiT_models = {
    f"DiT-{size}/{p}": partial(DiT, depth=d, hidden_size=h, num_heads=n, patch_size=p)
    for size, (d, h, n) in DIT_SIZES.items()
    for p in DIT_PATCHES[size]
}


def build_model(
    name: str,
    *,
    input_size: int,
    in_channels: int,
    num_classes: int,
    learn_sigma: bool = True,
    routing=None,
    **kwargs,
) -> DiT:
    """Build a registered DiT (e.g. "DiT-B/2"); ``routing`` is a RoutingSpec, None or kind "none"."""
    if name not in DiT_models:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(DiT_models)}")
    return DiT_models[name](
        input_size=input_size,
        in_channels=in_channels,
        num_classes=num_classes,
        learn_sigma=learn_sigma,
        routing=routing,
        **kwargs,
    )
