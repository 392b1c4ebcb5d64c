"""Linear CKA between a model's block outputs at different timesteps (DTR paper Fig. 6).

``linear_cka`` is the linear centered kernel alignment of Kornblith et al. (2019):
``CKA(X, Y) = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with column-centred X (n, p) and
Y (n, q) over the same n examples; it is invariant to orthogonal transforms and isotropic
scaling of either side, and equals 1 for X = Y.

``capture_block_outputs`` runs the model on one fixed batch ``x0`` noised to each timestep of a
grid with one fixed noise draw and the run's own diffusion (schedule), and records every block's output with forward hooks;
``cka_matrix`` gives, per block, the (K, K) CKA between the K timesteps (examples = the N images
by default, or the N * tokens positions); ``plot_cka_heatmaps`` draws methods side by side.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same n examples, (n, p) and (n, q) -> float in [0, 1]."""
    x = torch.as_tensor(x).reshape(x.shape[0], -1).double()
    y = torch.as_tensor(y).reshape(y.shape[0], -1).double()
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same number of examples, got {x.shape[0]} and {y.shape[0]}")
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    n = x.shape[0]
    if max(x.shape[1], y.shape[1]) > n:  # Gram form: cheaper when features outnumber examples
        k, l_ = x @ x.T, y @ y.T
        hsic, norm_x, norm_y = (k * l_).sum(), k.norm(), l_.norm()
    else:
        hsic = (y.T @ x).square().sum()
        norm_x, norm_y = (x.T @ x).norm(), (y.T @ y).norm()
    denom = norm_x * norm_y
    if denom == 0:
        return 0.0
    return float(hsic / denom)


def model_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks whose outputs are compared: DiT's ``blocks``; the ADM UNet's input, middle and
    output blocks, in forward order."""
    if hasattr(model, "blocks"):
        return list(model.blocks)
    if hasattr(model, "input_blocks"):
        return [*model.input_blocks, model.middle_block, *model.output_blocks]
    raise ValueError(f"do not know the blocks of {type(model).__name__}; pass modules=")


@torch.no_grad()
def capture_block_outputs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None,
    timesteps: Sequence[int],
    *,
    diffusion,
    noise: torch.Tensor | None = None,
    seed: int = 0,
    modules: Sequence[nn.Module] | None = None,
) -> dict[int, torch.Tensor]:
    """Block outputs of a fixed batch at each timestep: ``{block index: (K, N, features)}`` float32, CPU.

    ``x`` (N, C, H, W) is the clean batch x0; at each of the K timesteps the model sees
    ``q_sample(x0, t, noise)`` with the same ``noise`` (drawn from ``seed`` when not given).
    ``diffusion`` is the run's GaussianDiffusion (required: its schedule decides what x_t is, and
    a linear default would silently misread a cosine-schedule run).  The model runs in eval mode
    (restored afterwards).
    """
    if diffusion is None or not hasattr(diffusion, "q_sample"):
        raise TypeError("capture_block_outputs needs diffusion=, the run's GaussianDiffusion (its schedule)")
    device = next(model.parameters()).device
    x = x.to(device).float()
    if noise is None:
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    noise = noise.to(device).float()
    if y is not None:
        y = y.to(device)
    blocks = list(modules) if modules is not None else model_blocks(model)
    outputs: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(blocks))}

    def hook(index):
        def record(_module, _inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            outputs[index].append(out.detach().float().reshape(out.shape[0], -1).cpu())
        return record

    handles = [b.register_forward_hook(hook(i)) for i, b in enumerate(blocks)]
    was_training = model.training
    model.eval()
    dtype = next(model.parameters()).dtype
    try:
        for t in timesteps:
            tt = torch.full((x.shape[0],), int(t), dtype=torch.long, device=device)
            x_t = diffusion.q_sample(x, tt, noise)
            model(x_t.to(dtype), tt, y)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {i: torch.stack(v) for i, v in outputs.items()}


def cka_matrix(outputs: torch.Tensor | Mapping[int, torch.Tensor], rows: str = "samples",
               channels: int | None = None) -> torch.Tensor | dict[int, torch.Tensor]:
    """Linear CKA between timesteps: (K, N, F) -> (K, K) float64 (a dict of blocks -> a dict).

    ``rows="samples"``: the examples are the N images (features = everything else);
    ``rows="tokens"``: the examples are the N * tokens positions, with ``channels`` features each
    (the last ``channels`` of every flattened token for DiT's (L, D) outputs).
    """
    if isinstance(outputs, Mapping):
        return {k: cka_matrix(v, rows, channels) for k, v in outputs.items()}
    feats = torch.as_tensor(outputs)
    if feats.ndim != 3:
        raise ValueError(f"expected (K, N, features), got {tuple(feats.shape)}")
    if rows == "tokens":
        if not channels or feats.shape[2] % channels:
            raise ValueError("rows='tokens' needs channels dividing the feature size")
        feats = feats.reshape(feats.shape[0], -1, channels)
    elif rows != "samples":
        raise ValueError(f"rows must be 'samples' or 'tokens', got {rows!r}")
    k = feats.shape[0]
    out = torch.eye(k, dtype=torch.float64)
    for i in range(k):
        for j in range(i + 1, k):
            out[i, j] = out[j, i] = linear_cka(feats[i], feats[j])
    return out


def plot_cka_heatmaps(results: Mapping[str, Mapping[int, torch.Tensor]], timesteps: Sequence[int], path: str,
                      blocks: Sequence[int] | None = None, title: str = "") -> str:
    """Heatmaps of CKA between timesteps: one column per method (e.g. vanilla, R-TR, DTR, learned),
    one row per block (default: up to four blocks spread over the depth). Saves a PNG, returns path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(results)
    if not methods:
        raise ValueError("no results to plot")
    depth = len(results[methods[0]])
    if blocks is None:
        blocks = sorted({round(i * (depth - 1) / 3) for i in range(4)}) if depth > 1 else [0]
    ticks = list(range(len(timesteps)))
    step = max(1, len(ticks) // 5)
    fig, axes = plt.subplots(len(blocks), len(methods), figsize=(3.0 * len(methods), 2.8 * len(blocks)),
                             dpi=120, squeeze=False)
    image = None
    for r, b in enumerate(blocks):
        for c, name in enumerate(methods):
            ax = axes[r][c]
            image = ax.imshow(torch.as_tensor(results[name][b]).float().numpy(), vmin=0.0, vmax=1.0,
                              cmap="magma", origin="lower", interpolation="nearest")
            ax.set_xticks(ticks[::step], [str(timesteps[i]) for i in ticks[::step]], fontsize=7)
            ax.set_yticks(ticks[::step], [str(timesteps[i]) for i in ticks[::step]], fontsize=7)
            if r == 0:
                ax.set_title(name, fontsize=10)
            if c == 0:
                ax.set_ylabel(f"block {b}\ntimestep t", fontsize=8)
            if r == len(blocks) - 1:
                ax.set_xlabel("timestep t", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.8, label="linear CKA")
    if title:
        fig.suptitle(title)
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["capture_block_outputs", "cka_matrix", "linear_cka", "model_blocks", "plot_cka_heatmaps"]
