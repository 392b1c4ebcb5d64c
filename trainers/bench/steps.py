"""Training-step runners: one unit = one real training step through the path of
trainers/training/loop.py (``DiffusionObjective`` in a DeepSpeed engine, ZeRO-0, torch AdamW as
client optimizer, ``engine.backward`` and ``engine.step``, then the EMA update), on fixed random
batches, so every case of a comparison does the same work apart from what it compares.

    TrainStepRunner    a TrainStepCase: plain / routed DiT on latent-shaped data, fp32
    PresetStepRunner   a PresetStepCase: a preset's model, micro-batch and (resolved) precision,
                       with its model FLOPs per training image for the MFU

``engine="torch"`` times the same objective with a plain ``torch.optim.AdamW`` (no DeepSpeed)
for machines where DeepSpeed is unavailable.
"""
from __future__ import annotations

import logging
import os

import torch

from trainers.bench.cases import PresetStepCase, TrainStepCase

ENGINES = ("deepspeed", "torch")


def init_distributed(device: torch.device) -> None:
    """A one-process group, as the training loop makes (DeepSpeed needs one)."""
    from trainers.training.distributed import ensure_single_process_env, init_deepspeed_distributed
    ensure_single_process_env()
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if device.type == "cuda" else "cpu")
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    init_deepspeed_distributed(device.type)


class TrainStepRunner:
    """One unit = one real training step; ``steps_per_round`` of them per round.

    Every case replays the same batches (data, labels, timesteps, noise from ``case.seed``), so
    routed and plain models do exactly the same work apart from the routing.
    """

    POOL = 4  # distinct batches, cycled

    def __init__(self, case: TrainStepCase, device: torch.device, engine: str = "deepspeed"):
        from trainers.config import RunConfig
        from trainers.models import build_model
        cfg = RunConfig(model=case.model, routing=case.routing, beta=case.beta, alpha=case.alpha,
                        dataset="latents", global_batch=case.batch, micro_batch=case.batch,
                        seed=case.seed, progress=False)
        torch.manual_seed(case.seed)
        model = build_model(case.model, input_size=case.shape[-1], in_channels=case.shape[0],
                            num_classes=case.num_classes, learn_sigma=cfg.learn_sigma, routing=cfg.routing_spec())
        self._setup(case, cfg, model, case.shape, case.num_classes, "fp32", device, engine)

    def _setup(self, case, cfg, model, shape, num_classes: int, precision_ran: str, device: torch.device,
               engine: str) -> None:
        """Objective, EMA, engine (or plain AdamW) and the batch pool of ``model`` under ``cfg``."""
        from trainers.diffusion.gaussian import GaussianDiffusion
        from trainers.training.ema import EMA
        from trainers.training.objective import DiffusionObjective
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.name, self.case, self.device, self.engine_kind, self.cfg = case.name, case, device, engine, cfg
        self.repeats, self.per_unit, self.precision_ran = case.steps_per_round, 1, precision_ran
        diffusion = GaussianDiffusion(cfg.schedule, cfg.num_timesteps, learn_sigma=cfg.learn_sigma)
        self.objective = DiffusionObjective(cfg, model, diffusion, precision_ran)
        self.ema = EMA(model, cfg.ema_decay)
        if engine == "deepspeed":
            import deepspeed

            from trainers.training.loop import deepspeed_config
            init_distributed(device)
            optimizer = torch.optim.AdamW(self.objective.param_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            self.engine, _, _, _ = deepspeed.initialize(model=self.objective, optimizer=optimizer,
                                                        config=deepspeed_config(cfg, 1, precision_ran))
        else:
            self.objective.to(device)
            self.engine = None
            self.optimizer = torch.optim.AdamW(self.objective.param_groups(), lr=cfg.lr,
                                               weight_decay=cfg.weight_decay)
        self.ema.model.to(device)
        g = torch.Generator().manual_seed(case.seed)
        n = cfg.micro_batch
        self.batches = []
        for _ in range(self.POOL):
            t, cluster = self.objective.sample_timesteps(n, g)
            self.batches.append(tuple(v.to(device) for v in (
                torch.randn((n, *shape), generator=g), torch.randint(0, num_classes, (n,), generator=g),
                t, torch.randn((n, *shape), generator=g), cluster)))
        self.step = 0

    def unit(self) -> None:
        x, y, t, noise, cluster = self.batches[self.step % self.POOL]
        self.step += 1
        if self.engine is not None:
            loss, _ = self.engine(x, y, t, noise, cluster)
            self.engine.backward(loss)
            self.engine.step()
        else:
            loss, _ = self.objective(x, y, t, noise, cluster)
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.objective.model, self.step)


class PresetStepRunner(TrainStepRunner):
    """One unit = one training step of ``case.preset``'s model as trainers.training.loop builds it
    (``model_for`` of the preset's config), one micro-batch of random images of the dataset's shape,
    in the precision ``case.precision`` resolves to on the device.  ``info`` carries what the MFU
    needs: images per step, model FLOPs per training image, the precision that ran."""

    def __init__(self, case: PresetStepCase, device: torch.device, engine: str = "deepspeed"):
        from trainers.data.registry import dataset_info
        from trainers.models.from_config import model_for
        from trainers.precision import resolve_precision
        from trainers.presets import preset_config
        from trainers.training.efficiency import train_flops_per_image
        cfg = preset_config(case.preset, model=case.model, dataset=case.dataset, image_size=case.image_size,
                            micro_batch=case.micro_batch, global_batch=case.micro_batch, precision=case.precision,
                            routing=case.routing, seed=case.seed, progress=False)
        channels, num_classes = dataset_info(cfg.dataset, cfg.data_root or None)
        model = model_for(cfg)
        precision_ran = resolve_precision(cfg.precision, device.type)
        self._setup(case, cfg, model, (channels, cfg.image_size, cfg.image_size),
                    num_classes if cfg.class_cond else 1, precision_ran, device, engine)
        self.info = {"images_per_unit": cfg.micro_batch, "flops_per_image": train_flops_per_image(model),
                     "precision_ran": precision_ran}
