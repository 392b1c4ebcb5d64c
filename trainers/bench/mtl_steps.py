"""The runner of an MtlStepCase: a training step of a preset's model with vanilla weighting or with
ANT's PCGrad / Nash-MTL, through the path of trainers/training/loop.py (``DiffusionObjective`` in a
DeepSpeed engine, ``combined_backward``, ``engine.step``, EMA update), on fixed random batches drawn
the way the loop draws them (stratified timesteps for the combinations)."""
from __future__ import annotations

import torch

from trainers.bench.cases import MtlStepCase
from trainers.bench.steps import TrainStepRunner


class _TorchBackward:
    """``combined_backward``'s view of a plain torch step (``engine="torch"``): ZeRO-0, one micro-batch."""

    @staticmethod
    def backward(loss: torch.Tensor) -> None:
        loss.backward()

    @staticmethod
    def zero_optimization_stage() -> int:
        return 0

    @staticmethod
    def is_gradient_accumulation_boundary() -> bool:
        return True


class MtlStepRunner(TrainStepRunner):
    """One unit = one training step of ``case.preset``'s model under ``case.weighting``."""

    def __init__(self, case: MtlStepCase, device: torch.device, engine: str = "deepspeed"):
        from trainers.data.registry import dataset_info
        from trainers.models.from_config import model_for
        from trainers.presets import preset_config
        cfg = preset_config(case.preset, model=case.model, dataset=case.dataset, image_size=case.image_size,
                            micro_batch=case.micro_batch, global_batch=case.micro_batch, precision=case.precision,
                            weighting=case.weighting, uw_clusters=case.uw_clusters, uw_cluster_method="timestep",
                            routing="none", zero_stage=0, seed=case.seed, progress=False)
        channels, num_classes = dataset_info(cfg.dataset, cfg.data_root or None)
        self._setup(case, cfg, model_for(cfg), (channels, cfg.image_size, cfg.image_size),
                    num_classes if cfg.class_cond else 1, "fp32", device, engine)

    def unit(self) -> None:
        from trainers.training.gradient_combination import combined_backward
        x, y, t, noise, cluster = self.batches[self.step % self.POOL]
        self.step += 1
        torch.manual_seed(self.step)  # PCGrad's projection order (the loop seeds it per micro-batch)
        if self.engine is not None:
            loss, logs = self.engine(x, y, t, noise, cluster)
            combined_backward(self.engine, self.objective, loss, logs)
            self.engine.step()
        else:
            loss, logs = self.objective(x, y, t, noise, cluster)
            combined_backward(_TorchBackward, self.objective, loss, logs)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.objective.model, self.step)
