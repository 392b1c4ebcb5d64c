"""The samples of a FID-k evaluation as one image per training step: MLflow's stepped image
``samples`` of the run, which the MLflow UI shows with a step slider (how the samples change as the
model trains).  The grid is the first ``GRID_SAMPLES`` samples the evaluation drew anyway (same
class labels and noise at every step: trainers/evaluation/evaluate.py), laid out like the final
``samples.png``; nothing is sampled for it."""
from __future__ import annotations

import numpy as np
import torch

GRID_KEY = "samples"


def grid_array(samples: torch.Tensor, nrow: int = 8, padding: int = 2) -> np.ndarray:
    """An (H, W, 3) uint8 grid of ``samples`` (N, C, h, w) in [-1, 1], ``nrow`` per row on black
    ``padding``: the pixels torchvision's ``save_image(..., normalize=True, value_range=(-1, 1))``
    writes for samples.png, without importing torchvision in the training loop."""
    x = (samples.detach().float().cpu().clamp(-1, 1) + 1) / 2
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]
    n, _, h, w = x.shape
    cols, rows = min(n, nrow), -(-n // nrow)
    grid = torch.zeros(3, rows * (h + padding) + padding, cols * (w + padding) + padding)
    for i in range(n):
        top, left = padding + (i // nrow) * (h + padding), padding + (i % nrow) * (w + padding)
        grid[:, top:top + h, left:left + w] = x[i]
    return (grid * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def log_sample_grid(tracker, samples: torch.Tensor | None, step: int) -> None:
    """Queue the grid of ``samples`` on the run's tracker at ``step`` (nothing without samples) and
    wait until the step's writes are sent (``MlflowRun.flush``, bounded): the report that follows a
    FID-k evaluation may make Tune stop the trial (ASHA), which ends its process."""
    if samples is not None and len(samples):
        tracker.log_image(grid_array(samples), GRID_KEY, step)
        tracker.flush()
