"""Budgets: how big every trial of a sweep is, separate from what the sweep searches.

The same space runs at test scale, laptop scale or paper scale; a budget picks
the trainer preset, the resources of a trial and how many trials run at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Budget:
    name: str
    preset: str                       # trainers.presets name
    description: str
    cpus_per_trial: float = 1.0       # per training worker
    gpus_per_trial: float = 0.0       # per training worker
    workers_per_trial: int = 1        # >1: the trial fits a Ray Train TorchTrainer
    max_concurrent: int = 2
    num_trials: int | None = None     # None: the space's default
    baseline_seeds: tuple[int, ...] = (0,)
    max_failures: int = 2             # retries of a crashed trial, from its last checkpoint
    overrides: dict = field(default_factory=dict)
    worker_resources: dict = field(default_factory=dict)  # custom Ray resources per training worker
    # rough cost of a trial for ``--dry-run`` (search_spaces/estimate.py): seconds per optimizer step
    # (the laptop's is replaced by the measured ``step_ms_laptop`` of runs/bench/history.jsonl when
    # there is one), seconds per generated evaluation sample, seconds to start a trial
    est_step_s: float = 0.5
    est_sample_s: float = 0.04
    est_start_s: float = 15.0


BUDGETS: dict[str, Budget] = {
    "smoke": Budget("smoke", "smoke", "seconds per trial; what the tests run",
                    max_concurrent=2, num_trials=2, est_step_s=0.05, est_sample_s=0.01,
                    overrides=dict(steps=20, ckpt_every=10, eval_every=10, eval_k=64, final_eval_samples=128)),
    "smoke-ddp": Budget("smoke-ddp", "smoke", "like smoke, but every trial is a 2-worker Ray Train (DeepSpeed) run",
                        workers_per_trial=2, max_concurrent=1, num_trials=1, est_step_s=0.1, est_sample_s=0.01,
                        est_start_s=30.0,
                        overrides=dict(steps=20, ckpt_every=10, eval_every=10, eval_k=64, final_eval_samples=128,
                                       micro_batch=8)),
    # two seeds per baseline: the report pools the seed variance into a noise band (one seed cannot).
    # Estimates: a 2-core VM ran 0.49 s per step (bench step_ms_laptop) and 136-197 s per finished trial
    "laptop": Budget("laptop", "laptop", "a 2-core CPU, Fashion-MNIST, minutes per trial", max_concurrent=2,
                     baseline_seeds=(0, 1)),
    # the paper pipeline at test size on a simulated cluster (tests/test_paper_sim.py): every trial is
    # 2 Ray Train workers, each holding one `gpu_sim`, a custom resource the test's second node offers
    # in place of GPUs; one retry per trial (a lost node), resumed from the newest checkpoint; no baseline
    # trials (the test needs one trial to lose a node in and the searcher to see its two objectives)
    "paper-sim": Budget("paper-sim", "paper-sim", "the paper's latent pipeline at test size, 2 workers per trial "
                        "on nodes that offer the custom resource gpu_sim", workers_per_trial=2, max_concurrent=1,
                        num_trials=1, baseline_seeds=(), max_failures=1, worker_resources={"gpu_sim": 1},
                        est_step_s=0.1,
                        est_sample_s=0.3, est_start_s=30.0),
    # the driver's own cost per trial (python -m platform.bench --suite faults --cases sweep): trials that train
    # 2 smoke steps and evaluate nothing (no FID: sweep it with --objectives images_per_s), 8 at once on 2 cores
    "trivial": Budget("trivial", "smoke", "2 training steps and no evaluation per trial, 8 at once: what the "
                      "driver costs per trial (bench; use --objectives images_per_s)", cpus_per_trial=0.25,
                      max_concurrent=8, num_trials=200, baseline_seeds=(), max_failures=0, est_step_s=0.05,
                      est_start_s=10.0, overrides=dict(steps=2, ckpt_every=0, eval_every=0, final_eval_samples=0)),
    "paper": Budget("paper", "paper", "the paper's ImageNet-256 DiT-L/2 setting on a GPU cluster",
                    cpus_per_trial=8, gpus_per_trial=1, workers_per_trial=8, max_concurrent=4,
                    baseline_seeds=(0, 1, 2),
                    # DiT-L/2 on 8 A100s: 3.72 it/s (DTR paper, Sec. 5.4); sampling 250 DDPM steps with CFG
                    # on 8 GPUs taken as ~0.07 s per image (an assumption, not measured here)
                    est_step_s=1 / 3.72, est_sample_s=0.07, est_start_s=120.0),
    # text-conditional DiT (docs/text_conditional.md): captioned Fashion-MNIST with the offline MiniLM
    # encoder at the laptop scale, and the paper's MS-COCO setting (App. C: the paper budget with
    # DiT-B/2-text on a latent cache of coco_captions, CLIP text tokens; --set data_root=<latent cache>)
    "text-laptop": Budget("text-laptop", "laptop", "the laptop budget on captioned Fashion-MNIST with DiT-T/4-text "
                          "(offline MiniLM text encoder)", max_concurrent=2, baseline_seeds=(0, 1),
                          overrides=dict(model="DiT-T/4-text", dataset="fashion_mnist_captions", cfg_scale=1.5)),
    "coco": Budget("coco", "paper", "the paper's MS-COCO-256 text-to-image setting: DiT-B/2-text, 400K iterations, "
                   "batch 256, CFG 1.5, DDPM 250, cosine, FID-50K on val2014", cpus_per_trial=8, gpus_per_trial=1,
                   workers_per_trial=8, max_concurrent=4, baseline_seeds=(0, 1, 2),
                   overrides=dict(model="DiT-B/2-text", text_encoder="clip-l14"),
                   # DiT-B/2 on 8 A100s: 6.90 it/s (DTR paper, App. E) without the cross-attention the text
                   # model adds (an underestimate); sampling time as the paper budget's assumption
                   est_step_s=1 / 6.90, est_sample_s=0.04, est_start_s=120.0),
}


def get_budget(name: str) -> Budget:
    if name not in BUDGETS:
        raise ValueError(f"unknown budget {name!r}; choose from {', '.join(sorted(BUDGETS))}")
    return BUDGETS[name]
