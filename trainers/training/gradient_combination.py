"""PCGrad and Nash-MTL over ANT's K timestep clusters, run under the DeepSpeed engine.

Each cluster j of the stratified batch is one task, with loss ``L_j = Lbar_j / K`` (``Lbar_j``: the
mean loss of the batch's samples in cluster j), so that the plain sum of the K task gradients is the
vanilla gradient of the same batch.  Every cluster runs the whole network: all trainable parameters
of the model are shared, none is task-specific.  torchjd computes the K x n Jacobian of
``(L_1, ..., L_K)`` with respect to them (one row per cluster) and its ``PCGrad`` or ``NashMTL``
aggregator turns it into one vector g.

The engine then runs its own ``backward`` on the surrogate ``sum_p <p, g_p>`` (plus any auxiliary
loss such as Switch-DiT's prior term), whose gradient is g.  So what DeepSpeed does to a gradient
(loss scaling in fp16, the division by the accumulation steps, ZeRO-1's partitioned reduction, the
all-reduce, clipping at ``engine.step()``) happens to g exactly as it would to a vanilla gradient.

Supported: ZeRO stages 0 and 1, one micro-batch per step (``micro_batch == global_batch``, hence
one process).  A micro-batch of the stratified batch holds only some of the clusters, and both
methods are nonlinear in the Jacobian, so combining per micro-batch is not the method; the config
refuses the others (trainers/config_checks_mtl.py).  Docs: docs/loss_weighting.md.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

COMBINED_WEIGHTINGS = ("pcgrad", "nash_mtl")
SUPPORTED_ZERO_STAGES = (0, 1)

__all__ = ["COMBINED_WEIGHTINGS", "SUPPORTED_ZERO_STAGES", "ClusterGradientCombiner", "cluster_losses",
           "combined_backward", "shared_parameters"]


def cluster_losses(per_sample: Tensor, cluster_idx: Tensor, num_clusters: int) -> Tensor:
    """(K,) task losses ``Lbar_j / K`` of one batch (0 for a cluster with no sample), with their graph."""
    idx = cluster_idx.to(device=per_sample.device, dtype=torch.long)
    sums = per_sample.new_zeros(num_clusters).index_add(0, idx, per_sample)
    counts = torch.bincount(idx, minlength=num_clusters).to(per_sample.dtype)
    return sums / (counts.clamp_min(1) * num_clusters)


def shared_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters every cluster's loss goes through: all trainable parameters of the model."""
    return [p for p in model.parameters() if p.requires_grad]


class ClusterGradientCombiner(nn.Module):
    """torchjd's PCGrad or Nash-MTL aggregator over the K per-cluster gradients.

    ``combine(jacobian (K, n)) -> (n,)``; ``record()`` gives the last combination's weights
    (``g = sum_j w_j * J_j``) and the pairwise cosines of the cluster gradients.  Nash-MTL keeps
    state from step to step (its previous weights warm-start the next solve, and a step counter):
    it travels in the module's ``state_dict`` as extra state, so DeepSpeed's checkpoints carry it
    and a resumed run continues exactly.  PCGrad is stateless; its random projection order is drawn
    from torch's global generator, which the training loop seeds per micro-batch.
    """

    def __init__(self, kind: str, num_clusters: int, nash_max_norm: float = 1.0):
        super().__init__()
        from torchjd.aggregation import NashMTL, PCGrad
        if kind not in COMBINED_WEIGHTINGS:
            raise ValueError(f"kind must be one of {COMBINED_WEIGHTINGS}, got {kind!r}")
        if isinstance(num_clusters, bool) or int(num_clusters) != num_clusters or num_clusters < 2:
            raise ValueError(f"num_clusters must be an integer >= 2, got {num_clusters!r}")
        self.kind, self.num_clusters = kind, int(num_clusters)
        self.aggregator = PCGrad() if kind == "pcgrad" else NashMTL(n_tasks=self.num_clusters,
                                                                    max_norm=nash_max_norm)
        self.last: dict[str, Tensor] = {}

    def combine(self, jacobian: Tensor) -> Tensor:
        """The aggregated gradient (n,) of a (K, n) Jacobian (row j: cluster j's gradient), in fp32."""
        if jacobian.ndim != 2 or jacobian.shape[0] != self.num_clusters:
            raise ValueError(f"jacobian must be (K={self.num_clusters}, n), got {tuple(jacobian.shape)}")
        matrix = jacobian.float()
        captured = {}
        hook = self.aggregator.weighting.register_forward_hook(
            lambda _m, _i, out: captured.__setitem__("w", out.detach()))
        try:
            vector = self.aggregator(matrix)
        finally:
            hook.remove()
        unit = matrix / matrix.norm(dim=1, keepdim=True).clamp_min(1e-30)
        self.last = {"weights": captured["w"].float().cpu(), "cosines": (unit @ unit.T).cpu()}
        return vector

    def record(self) -> dict[str, float]:
        """``mtl_w{j}`` and ``mtl_cos{i}_{j}`` (i < j) of the last combination; {} before the first."""
        if not self.last:
            return {}
        out = {f"mtl_w{j}": float(w) for j, w in enumerate(self.last["weights"].tolist())}
        cos = self.last["cosines"]
        out.update({f"mtl_cos{i}_{j}": float(cos[i, j]) for i in range(self.num_clusters)
                    for j in range(i + 1, self.num_clusters)})
        return out

    # -- Nash-MTL's state in checkpoints (nn.Module extra state: saved with the engine's module)
    def get_extra_state(self) -> dict:
        if self.kind != "nash_mtl":
            return {}
        w = self.aggregator.weighting
        return {"step": torch.tensor(float(w.step), dtype=torch.float64),
                "prvs_alpha": torch.from_numpy(np.asarray(w.prvs_alpha, dtype=np.float64).copy()),
                "prvs_alpha_dtype": str(np.asarray(w.prvs_alpha).dtype),
                "normalization_factor": torch.from_numpy(np.asarray(w.normalization_factor,
                                                                    dtype=np.float64).copy())}

    def set_extra_state(self, state: dict) -> None:
        if self.kind != "nash_mtl" or not state:
            return
        w = self.aggregator.weighting
        w.reset()
        w.prvs_alpha = state["prvs_alpha"].numpy().astype(state["prvs_alpha_dtype"])
        w.normalization_factor = state["normalization_factor"].numpy().copy()
        w.step = float(state["step"])
        if w.step:  # torchjd builds its problem on the first call only: rebuild it around the restored weights
            w._init_optim_problem()


def combined_backward(engine, objective, loss: Tensor, logs: dict) -> None:
    """The engine's backward for every weighting: ``engine.backward(loss)`` unless the objective
    combines per-cluster gradients (``objective.combiner``), in which case the engine back-propagates
    the surrogate whose gradient is the combination (module docstring)."""
    combiner = getattr(objective, "combiner", None)
    if combiner is None:
        engine.backward(loss)
        return
    from torchjd.autojac import jac
    stage = engine.zero_optimization_stage()
    if stage not in SUPPORTED_ZERO_STAGES or not engine.is_gradient_accumulation_boundary():
        raise RuntimeError(f"{combiner.kind}: supported with ZeRO {SUPPORTED_ZERO_STAGES} and one micro-batch "
                           f"per step, got stage {stage} with gradient accumulation "
                           f"{engine.gradient_accumulation_steps()}")
    params = shared_parameters(objective.model)
    aux = logs.get("aux_loss")
    rows = jac(logs["cluster_losses"], params, retain_graph=aux is not None)
    matrix = torch.cat([r.reshape(combiner.num_clusters, -1) for r in rows], dim=1)
    vector = combiner.combine(matrix)
    surrogate = torch.zeros((), device=vector.device, dtype=torch.float32)
    for p, g in zip(params, vector.split([p.numel() for p in params])):
        surrogate = surrogate + (p * g.view_as(p).to(p.dtype)).sum().float()
    if aux is not None:
        surrogate = surrogate + aux.float()
    engine.backward(surrogate)
