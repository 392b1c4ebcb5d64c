"""A learned sliding window (beyond the papers): DTR with a trained start curve.

DTR (docs/routing.md) reads the channel window ``[s_t, s_t + W)`` with the fixed start
``s_t = round((t / (T-1))**alpha * L)``, ``W = floor(beta * C)``, ``L = C - W``. Here the width W
stays fixed and the start curve is learned with a monotone, differentiable parameterisation:

    knots 0 = tau_0 < tau_1 < ... < tau_K = T-1 (integer timesteps, evenly spread)
    u_k   = sum_{i<=k} d_i * exp(theta_i) / sum_i d_i * exp(theta_i),  u_0 = 0,  u_K = 1
    s(t)  = L * (linear interpolation of u between the knots at t)

with ``d_i = (tau_i/(T-1))**alpha - (tau_{i-1}/(T-1))**alpha`` the DTR curve's increments, so at
``theta = 0`` the knots lie exactly on DTR's curve; with ``knots=None`` (the default) there is
one knot per timestep (K = T-1) and the initial window is DTR's table exactly. s(t) is
non-decreasing in t, runs from 0 to L, and every row keeps the width W.

The forward pass uses the exact 0/1 window at ``round(s)`` (half to even, as DTR) in training
and in evaluation; in training the gradient is the one of a soft window with sigmoid edges of
temperature ``temperature`` (in channels),
``m_c = sigmoid((c + 1/2 - s)/tau) * sigmoid((s + W - 1/2 - c)/tau)`` (straight-through, the
default), so the loss reaches theta while the trained mask is the evaluated one and, at
initialisation, exactly DTR's table.  ``straight_through=False`` trains with the soft window
itself (edge channels about 0.62 / 0.38 at tau = 1, never DTR's mask, and a train/eval gap).

Parameters: K per model (default T-1 = 999), one curve shared by all blocks, like DTR's
shared table. They are plain parameters of the model, trained with the model's optimizer.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trainers.routing.masks import window_width


class LearnedWindow(nn.Module):
    """Mask rows (N, 1, C) of a DTR window whose start curve s(t) is learned."""

    def __init__(self, num_timesteps: int, channels: int, beta: float = 0.8, alpha: float = 4.0,
                 knots: int | None = None, temperature: float = 1.0, straight_through: bool = True):
        super().__init__()
        if num_timesteps < 2:
            raise ValueError(f"num_timesteps must be >= 2, got {num_timesteps}")
        knots = num_timesteps - 1 if knots is None else int(knots)
        if not 1 <= knots <= num_timesteps - 1:
            raise ValueError(f"knots must be in [1, T-1={num_timesteps - 1}], got {knots}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.num_timesteps, self.channels, self.beta, self.alpha = num_timesteps, channels, beta, alpha
        self.width = window_width(channels, beta)
        self.shift = channels - self.width
        self.knots, self.temperature, self.straight_through = knots, float(temperature), straight_through

        knot_t = np.linspace(0, num_timesteps - 1, knots + 1).round().astype(np.int64)
        pos = knot_t / (num_timesteps - 1)
        self._base = np.diff(pos**alpha)  # (K,) > 0: DTR's curve increments between knots, float64
        # linear interpolation of each timestep between its two knots
        t = np.arange(num_timesteps)
        seg = np.clip(np.searchsorted(knot_t, t, side="right") - 1, 0, knots - 1)
        frac = (t - knot_t[seg]) / (knot_t[seg + 1] - knot_t[seg])
        self._seg, self._frac, self.knot_timesteps = seg, frac, knot_t
        self._consts: dict = {}
        self.theta = nn.Parameter(torch.zeros(knots))

    def initialize(self) -> None:
        with torch.no_grad():
            self.theta.zero_()

    def _const(self, name: str, device: torch.device) -> torch.Tensor:
        key = (name, str(device))
        if key not in self._consts:
            self._consts[key] = torch.as_tensor(getattr(self, name), device=device)
        return self._consts[key]

    def knot_values(self) -> torch.Tensor:
        """u at the K+1 knots (float64, 0 to 1, non-decreasing), differentiable w.r.t. theta."""
        dev = self.theta.device
        inc = self._const("_base", dev) * self.theta.double().exp()
        cum = torch.cat([inc.new_zeros(1), inc.cumsum(0)])
        return cum / cum[-1]

    def starts(self) -> torch.Tensor:
        """Real-valued window starts s(t) for all T timesteps, (T,) float64 in [0, L]."""
        u = self.knot_values()
        seg, frac = self._const("_seg", u.device), self._const("_frac", u.device)
        return self.shift * (u[seg] + frac * (u[seg + 1] - u[seg]))

    def hard_starts(self) -> torch.Tensor:
        """Integer starts round(s(t)) (half to even), (T,) long."""
        return self.starts().detach().round().long()

    def _hard(self, s: torch.Tensor) -> torch.Tensor:
        cols = torch.arange(self.channels, device=s.device)
        start = s.detach().round().long().unsqueeze(-1)
        return ((cols >= start) & (cols < start + self.width)).double()

    def _soft(self, s: torch.Tensor) -> torch.Tensor:
        cols = torch.arange(self.channels, device=s.device, dtype=torch.float64)
        s = s.unsqueeze(-1)
        lower = torch.sigmoid((cols + 0.5 - s) / self.temperature)
        upper = torch.sigmoid((s + self.width - 0.5 - cols) / self.temperature)
        return lower * upper

    def rows(self, t: torch.Tensor, hard: bool | None = None) -> torch.Tensor:
        """Mask rows (N, C) float64 for timesteps t: exact 0/1 in eval; in training the hard window
        with the soft window's gradient (straight-through) or the soft window itself (``hard``
        overrides the mode)."""
        s = self.starts()[t.long().to(self.theta.device)]
        hard = (not self.training) if hard is None else hard
        if hard:
            return self._hard(s)
        soft = self._soft(s)
        return (soft - soft.detach()) + self._hard(s) if self.straight_through else soft

    def mask_table(self, hard: bool = True) -> torch.Tensor:
        """The whole (T, C) table, float32 (hard by default), e.g. for a mask image."""
        with torch.no_grad():
            return self.rows(torch.arange(self.num_timesteps, device=self.theta.device), hard=hard).float()

    # -- forward pieces used by DiT (the same window in every block)
    def begin(self, t: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        return self.rows(t).to(t_emb.dtype).unsqueeze(1)

    def block_mask(self, i: int, z: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return state

    def aux(self, t, state, t_embedder):
        return None

    def macs(self, tokens: int) -> int:
        return 0


__all__ = ["LearnedWindow"]
