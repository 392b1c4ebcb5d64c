"""What a configuration's model costs: parameter count and forward GFLOPs (MACs / 1e9, the DiT
paper's unit), from the model built on the meta device (no memory, no weights)."""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=None)
def _model_cost(model: str, image_size: int, dataset: str, data_root: str, class_cond: bool, learn_sigma: bool,
                routing: str, experts: int, top_k: int) -> tuple[int | None, float | None]:
    import torch

    from trainers.data.registry import dataset_info
    from trainers.models import build_model, forward_macs
    from trainers.routing.spec import RoutingSpec
    try:
        channels, classes = dataset_info(dataset, data_root or None)
        spec = RoutingSpec(kind=routing, experts=experts, top_k=top_k) if routing in ("learned",) else None
        with torch.device("meta"):
            net = build_model(model, input_size=image_size, in_channels=channels,
                              num_classes=classes if class_cond else 1, learn_sigma=learn_sigma, routing=spec)
    except Exception:
        return None, None
    params = sum(p.numel() for p in net.parameters())
    try:
        gflops = forward_macs(net) / 1e9
    except Exception:  # the analytic counter is DiT-only (ADM has no hidden_size)
        gflops = None
    return params, gflops


def model_cost(row: dict) -> tuple[int | None, float | None]:
    """(parameter count, forward GFLOPs) of the row's model; (None, None) if unknown.
    Cached per model name and the few fields that change the count (data channels/classes,
    learned routing's experts); fixed masks hold no parameters; a multi-expert run counts its
    N models (its GFLOPs stay one model's: one expert denoises each sample)."""
    if not row.get("model"):
        return None, None
    params, gflops = _model_cost(row["model"], int(row.get("image_size") or 32),
                                 row.get("dataset") or "fashion_mnist",
                                 row.get("data_root") or "", bool(row.get("class_cond", True) is not False),
                                 bool(row.get("learn_sigma", True) is not False), row.get("routing") or "none",
                                 int(row.get("experts") or 3), int(row.get("top_k") or 2))
    n = int(row.get("multi_expert_n") or 1)  # a multi-expert ensemble holds N models, runs one per sample
    return (params * n if params is not None else None), gflops
