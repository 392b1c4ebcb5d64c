"""Learned routing of Switch-DiT (Park et al. 2024, arXiv 2403.09176), docs/routing.md.

Every DiT block gets a router that turns the block input ``z`` (N, L, D) into a real-valued
mask used exactly like DTR's binary row (``out = x + Block(m * x)``, docs/routing.md)::

    m(z) = 1 + sum_{j in TopK(t)} g_j(t) * (W_j z + b_j)

with ``E`` linear experts D -> D (zero-initialised, so a fresh model *is* plain DiT) and the
gate ``g(t) = softmax(Linear(SiLU(t_emb)))`` over the E experts computed from the timestep
embedding only. The top-k gate values are used as they are (not renormalised) and every
token of a sample uses the same k experts.

Diffusion-prior loss: ``P`` = concatenation over blocks of each sample's gate probabilities,
(N, depth*E), divided by depth (rows sum to 1). The target is a DTR-shaped table over the
depth*E expert slots (window width depth*k, power ``alpha``), whose slots are matched to the
model's slots by the Hungarian algorithm (cost: L1 between the model's top-k indicator table
over all T timesteps and the prior table; no gradient; model and prior slots in fresh random
orders at every evaluation, as the released code, drawn from ``seed`` and a saved counter),
gathered at each sample's t and normalised to sum 1. ``loss = mean_n JS(P_n, target_n)`` with eps 1e-6, times ``prior_weight``.

Parameters added per model: ``depth * (E * (D*D + D) + D*E + E)``
(DiT-S/2 with E=3: 5,336,100).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trainers.routing.masks import dtr_mask, window_width


def switch_prior_table(num_timesteps: int, depth: int, experts: int, top_k: int, alpha: float = 4.0) -> torch.Tensor:
    """The diffusion prior over the depth*E expert slots: a DTR table (T, depth*E) with
    window width depth*k (built with beta = k/E), float32 0/1."""
    slots, width = depth * experts, depth * top_k
    beta = top_k / experts
    if window_width(slots, beta) != width:  # guard against int(C * beta) losing a unit to float error
        beta = (width + 0.5) / slots
    table = dtr_mask(num_timesteps, slots, beta, alpha)
    assert int(table[0].sum()) == width
    return table


def slot_orders(seed: int, draw: int, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """Two random permutations of the ``slots`` expert slots (model slots, prior slots) for the
    ``draw``-th prior-loss evaluation: a function of (seed, draw) alone, so a resumed run continues
    the same stream."""
    rng = np.random.default_rng([int(seed) % 2**32, int(draw)])
    return rng.permutation(slots), rng.permutation(slots)


def match_slots(indicator: torch.Tensor, prior: torch.Tensor,
                order: tuple[np.ndarray, np.ndarray] | None = None) -> torch.Tensor:
    """Hungarian matching of the model's expert slots to the prior's slots.

    ``indicator`` and ``prior`` are (T, S) tables; the cost of pairing model slot i with prior
    slot j is ``sum_t |indicator[t, i] - prior[t, j]|``. Returns ``perm`` (S,) long with
    ``perm[i]`` the prior slot assigned to model slot i (a permutation).

    ``order`` = (model slot order, prior slot order): the solver sees the cost with its rows and
    columns in these orders, so among equally cheap matchings (identical columns are common) the
    one it returns depends on them; the released code draws both at random at every step.
    """
    from scipy.optimize import linear_sum_assignment

    if indicator.shape != prior.shape or indicator.ndim != 2:
        raise ValueError(f"tables must both be (T, S), got {tuple(indicator.shape)} and {tuple(prior.shape)}")
    with torch.no_grad():
        cost = torch.cdist(indicator.T.double().unsqueeze(0), prior.T.double().unsqueeze(0), p=1)[0].cpu().numpy()
    slots = indicator.shape[1]
    row_order, col_order = (np.arange(slots), np.arange(slots)) if order is None else map(np.asarray, order)
    rows, cols = linear_sum_assignment(cost[np.ix_(row_order, col_order)])
    perm = torch.empty(slots, dtype=torch.long)
    perm[torch.as_tensor(row_order[rows], dtype=torch.long)] = torch.as_tensor(col_order[cols], dtype=torch.long)
    return perm


def js_divergence(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Jensen-Shannon divergence between the rows of two (N, S) distributions -> (N,)."""
    m = 0.5 * (p + q)
    log_m = (m + eps).log()
    kl_pm = (p * ((p + eps).log() - log_m)).sum(-1)
    kl_qm = (q * ((q + eps).log() - log_m)).sum(-1)
    return 0.5 * (kl_pm + kl_qm)


class BlockRouter(nn.Module):
    """One block's gate (timestep embedding -> E probabilities) and its E linear experts D -> D."""

    def __init__(self, hidden_size: int, experts: int = 3, top_k: int = 2):
        super().__init__()
        if not 1 <= top_k <= experts:
            raise ValueError(f"top_k must be in [1, experts={experts}], got {top_k}")
        self.top_k = top_k
        self.gate = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, experts))
        self.experts = nn.ModuleList([nn.Linear(hidden_size, hidden_size) for _ in range(experts)])

    def initialize(self) -> None:
        """Zero experts (mask = 1 at init); xavier gate with zero bias (DiT's linear init)."""
        for expert in self.experts:
            nn.init.zeros_(expert.weight)
            nn.init.zeros_(expert.bias)
        nn.init.xavier_uniform_(self.gate[-1].weight)
        nn.init.zeros_(self.gate[-1].bias)

    def probs(self, t_emb: torch.Tensor) -> torch.Tensor:
        """Gate probabilities (N, E), softmax in float32."""
        return self.gate(t_emb).float().softmax(dim=-1)

    def mask(self, z: torch.Tensor, probs: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """``1 + sum_{j in chosen} g_j (W_j z + b_j)`` for tokens z (N, L, D); chosen (N, k) expert ids.

        Each expert runs only on the samples that chose it.
        """
        delta = torch.zeros_like(z)
        for j, expert in enumerate(self.experts):
            rows = (chosen == j).any(dim=1).nonzero(as_tuple=True)[0]
            if rows.numel() == 0:
                continue
            g = probs.index_select(0, rows)[:, j].to(z.dtype).view(-1, 1, 1)
            delta = delta.index_add(0, rows, g * expert(z.index_select(0, rows)))
        return 1.0 + delta


class SwitchRouter(nn.Module):
    """Switch-DiT routing of a depth-block DiT: per-block routers plus the diffusion-prior loss.

    Used by :class:`trainers.models.dit.DiT` through ``begin`` / ``block_mask`` / ``aux``; the
    model stores the prior loss of its last training forward as ``model.aux_loss`` (weighted)
    and ``model.prior_loss`` (the JS divergence itself).
    """

    def __init__(self, depth: int, hidden_size: int, num_timesteps: int = 1000, experts: int = 3, top_k: int = 2,
                 prior_weight: float = 1.0, alpha: float = 4.0, eps: float = 1e-6, seed: int = 0):
        super().__init__()
        self.depth, self.hidden_size, self.num_timesteps = depth, hidden_size, num_timesteps
        self.num_experts, self.top_k, self.prior_weight, self.eps = experts, top_k, float(prior_weight), eps
        self.routers = nn.ModuleList([BlockRouter(hidden_size, experts, top_k) for _ in range(depth)])
        with torch.device("cpu"):  # deterministic from the config: not saved in checkpoints
            prior = switch_prior_table(num_timesteps, depth, experts, top_k, alpha)
        self.register_buffer("prior_table", prior, persistent=False)
        # slot orders of the matching: drawn from (seed, number of prior-loss evaluations so far); the
        # count is saved with the model, so a resumed run draws what the uninterrupted one would
        self.seed = int(seed)
        self.register_buffer("prior_draws", torch.zeros((), dtype=torch.long), persistent=True)
        self.last_perm: torch.Tensor | None = None  # slot matching of the last prior-loss evaluation

    @staticmethod
    def extra_parameters(depth: int, hidden_size: int, experts: int = 3) -> int:
        """Parameters the routing adds to a DiT: ``depth * (E*(D^2+D) + D*E + E)``."""
        d, e = hidden_size, experts
        return depth * (e * (d * d + d) + d * e + e)

    def initialize(self) -> None:
        for router in self.routers:
            router.initialize()

    def macs(self, tokens: int) -> int:
        """Forward MACs per sample: k experts on every token plus the gate, per block."""
        d = self.hidden_size
        return self.depth * (self.top_k * tokens * d * d + d * self.num_experts)

    # -- forward pieces used by DiT
    def begin(self, t: torch.Tensor, t_emb: torch.Tensor) -> dict:
        probs = [r.probs(t_emb) for r in self.routers]
        chosen = [p.topk(self.top_k, dim=-1).indices for p in probs]
        return {"probs": probs, "chosen": chosen}

    def block_mask(self, i: int, z: torch.Tensor, state: dict) -> torch.Tensor:
        return self.routers[i].mask(z, state["probs"][i], state["chosen"][i])

    def aux(self, t: torch.Tensor, state: dict, t_embedder: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """(weighted prior loss, unweighted JS) of a forward's gates."""
        js = self.prior_loss(t, state["probs"], t_embedder)
        return self.prior_weight * js, js

    # -- the diffusion prior
    @torch.no_grad()
    def gate_table(self, t_embedder: nn.Module) -> torch.Tensor:
        """Gate probabilities of every block at every timestep: (depth, T, E) float32."""
        device = self.prior_table.device
        t_emb = t_embedder(torch.arange(self.num_timesteps, device=device))
        return torch.stack([r.probs(t_emb) for r in self.routers])

    def indicator_table(self, t_embedder: nn.Module) -> torch.Tensor:
        """Top-k indicator (depth, T, E) float32: 1 where a block selects an expert at t."""
        probs = self.gate_table(t_embedder)
        chosen = probs.topk(self.top_k, dim=-1).indices
        return torch.zeros_like(probs).scatter_(-1, chosen, 1.0)

    def expert_usage(self, t_embedder: nn.Module, block: int | None = None) -> torch.Tensor:
        """Expert-usage table (T, E): top-k selections of ``block`` (0/1), or their mean over
        blocks when ``block`` is None. Every row sums to k."""
        ind = self.indicator_table(t_embedder)
        return ind.mean(0) if block is None else ind[block]

    def matched_prior(self, t_embedder: nn.Module, order=None) -> torch.Tensor:
        """The prior table with its slots permuted onto the model's slots, (T, depth*E); ``order``
        as in :func:`match_slots` (None: the solver's own tie-breaking)."""
        ind = self.indicator_table(t_embedder)  # (depth, T, E)
        flat = ind.permute(1, 0, 2).reshape(self.num_timesteps, -1)  # slot = block * E + expert
        perm = match_slots(flat, self.prior_table, order).to(self.prior_table.device)
        self.last_perm = perm
        return self.prior_table[:, perm]

    def prior_loss(self, t: torch.Tensor, probs: list[torch.Tensor], t_embedder: nn.Module) -> torch.Tensor:
        """Unweighted diffusion-prior loss: batch mean of JS(P, matched prior row at t). Every call
        matches with fresh random slot orders (the next draw of the seeded stream)."""
        p = torch.cat(probs, dim=-1) / self.depth  # (N, depth*E)
        order = slot_orders(self.seed, int(self.prior_draws), self.depth * self.num_experts)
        self.prior_draws += 1
        target = self.matched_prior(t_embedder, order)[t.long().to(self.prior_table.device)].to(p.device)
        target = target / target.sum(-1, keepdim=True)
        return js_divergence(p, target, self.eps).mean()


def switch_parameter_count(depth: int, hidden_size: int, experts: int = 3) -> int:
    """``depth * (E*(D^2+D) + D*E + E)``, the parameters Switch-DiT adds to a DiT."""
    return SwitchRouter.extra_parameters(depth, hidden_size, experts)


__all__ = ["BlockRouter", "SwitchRouter", "js_divergence", "match_slots", "slot_orders", "switch_parameter_count",
           "switch_prior_table"]
