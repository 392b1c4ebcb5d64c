"""The training loop of one diffusion model under DeepSpeed: the unit every search trial runs.

Every random draw of a step is a function of (seed, step, rank) (see batches.py), so a
resumed run reproduces the uninterrupted loss trajectory bit for bit on CPU.  Launch recipes
are in trainers/train.py (the command line); a multi-expert config goes through
trainers/training/run.py, which trains its members with this loop.
"""
from __future__ import annotations

import logging
import math
import os
import resource
import statistics
import sys
import time
from typing import Callable

import torch

from trainers.config import RunConfig
from trainers.data.registry import build_dataset
from trainers.diffusion.gaussian import GaussianDiffusion
from trainers.evaluation.artifacts import write_final_artifacts
from trainers.evaluation.evaluate import evaluate_model
from trainers.evaluation.sample_grid import log_sample_grid
from trainers.models.from_config import model_for
from trainers.precision import resolve_precision
from trainers.routing.roaming import sync_roaming
from trainers.training.batches import (
    BatchSchedule,
    load_batch,
    shard,
    step_generator,
    step_seed,
)
from trainers.training.checkpoint import (
    check_resumable,
    latest_checkpoint,
    load_checkpoint,
    read_checkpoint_config,
    resolve_resume_dir,
    save_checkpoint,
    tag_for,
)
from trainers.training.distributed import (
    all_reduce_mean,
    barrier,
    broadcast_module,
    broadcast_object,
    ensure_single_process_env,
    init_deepspeed_distributed,
    rank_and_world,
)
from trainers.training.efficiency import peak_matmul_flops, train_flops_per_image
from trainers.training.ema import EMA, update_ema
from trainers.training.gradient_combination import combined_backward
from trainers.training.objective import DiffusionObjective
from trainers.training.preemption import Preempted, PreemptionGuard
from trainers.training.tracking import MetricsFile, MlflowRun, read_metrics

log = logging.getLogger(__name__)
Report = Callable[[dict, "str | None"], None]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stops instead of continuing silently."""


class EvaluationError(RuntimeError):
    """The FID-k evaluation during training failed; the step's checkpoint was already written."""


def deepspeed_config(cfg: RunConfig, world_size: int, precision_ran: str | None = None) -> dict:
    per_step = cfg.micro_batch * world_size
    if cfg.global_batch % per_step:
        raise ValueError(f"global_batch={cfg.global_batch} must be divisible by micro_batch x world_size "
                         f"= {cfg.micro_batch} x {world_size}")
    return {
        "train_batch_size": cfg.global_batch,
        "train_micro_batch_size_per_gpu": cfg.micro_batch,
        "gradient_accumulation_steps": cfg.global_batch // per_step,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": {"stage": cfg.zero_stage},
        "bf16": {"enabled": (precision_ran or cfg.precision) == "bf16"},
        "fp16": {"enabled": (precision_ran or cfg.precision) == "fp16"},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _init_engine(cfg: RunConfig, objective: DiffusionObjective, world_size: int):
    """DeepSpeed engine over the objective, with torch's AdamW as the client optimizer."""
    import deepspeed
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    optimizer = torch.optim.AdamW(objective.param_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    engine, _, _, _ = deepspeed.initialize(model=objective, optimizer=optimizer,
                                           config=deepspeed_config(cfg, world_size, objective.precision_ran))
    return engine


def _progress(cfg: RunConfig, start: int, rank: int):
    from tqdm import tqdm
    interactive = cfg.progress and rank == 0 and sys.stderr.isatty()
    return tqdm(total=cfg.steps, initial=start, disable=not interactive, unit="step", dynamic_ncols=True)


def train_model(cfg: RunConfig, *, resume: str | None = None, parent_run_id: str | None = None,
          report: Report | None = None, mlflow_enabled: bool = True, threads: int | None = None) -> dict:
    """Train the single model of ``cfg``; returns the final metrics.  ``report(metrics, checkpoint_dir)`` is called at
    every checkpoint/evaluation step and at the end (Tune uses it); ``resume`` is a run or
    checkpoint directory."""
    ensure_single_process_env()
    if threads:
        torch.set_num_threads(threads)
    init_deepspeed_distributed("cuda" if torch.cuda.is_available() else "cpu")
    rank, world = rank_and_world()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")

    start_step, resume_path = 0, None
    if resume:
        resume_path = resolve_resume_dir(resume)
        check_resumable(read_checkpoint_config(resume_path), cfg)
    elif latest_checkpoint(cfg.run_dir):
        raise ValueError(f"{cfg.run_dir} already holds checkpoints of a run: continue it with --resume "
                         f"{cfg.run_dir}, or start a new one under another --run-name / --run-dir")

    dataset = build_dataset(cfg.dataset, root=cfg.data_root or None, image_size=cfg.image_size, split="train",
                            random_flip=cfg.random_flip, seed=cfg.seed)
    model = model_for(cfg)
    diffusion = GaussianDiffusion(cfg.schedule, cfg.num_timesteps, learn_sigma=cfg.learn_sigma)
    precision_ran = resolve_precision(cfg.precision, device.type)
    objective = DiffusionObjective(cfg, model, diffusion, precision_ran)
    ema = EMA(model, cfg.ema_decay, warmup=cfg.ema_warmup) if rank == 0 else None
    t0 = time.perf_counter()
    engine = _init_engine(cfg, objective, world)
    init_seconds = time.perf_counter() - t0
    if resume_path:
        state = load_checkpoint(engine, ema, resume_path) if rank == 0 else None
        if rank != 0:
            root, tag = os.path.split(resume_path.rstrip("/"))
            engine.load_checkpoint(root, tag=tag)
        start_step = broadcast_object(state["step"] if state else None)
        if start_step > cfg.steps:
            raise ValueError(f"the checkpoint is at step {start_step}, past the requested steps={cfg.steps}")

    tracker = MlflowRun(cfg, parent_run_id=parent_run_id, enabled=mlflow_enabled and rank == 0,
                        resuming=resume_path is not None)
    if rank == 0:
        tracker.set_tags({"precision_ran": precision_ran})
    metrics_file = MetricsFile(cfg.run_dir, resume_step=start_step if resume_path else None) if rank == 0 else None
    try:
        with PreemptionGuard() as guard:
            result = _loop(cfg, engine, objective, ema, dataset, diffusion, start_step, rank, world, device,
                           tracker, metrics_file, report, init_seconds, guard)
    except BaseException as err:
        if rank == 0:
            tracker.set_tags({"error": f"{type(err).__name__}: {err}"[:4000]})
            tracker.finish("KILLED" if isinstance(err, (KeyboardInterrupt, Preempted)) else "FAILED")
        raise
    if rank == 0:
        tracker.finish("FINISHED")
    path = result.pop("_checkpoint")
    if report:  # last: a scheduler may end the trial's process as soon as it sees the final result
        report({"step": cfg.steps, **result, "final": True}, path)
    return result


def _loop(cfg, engine, objective, ema, dataset, diffusion, start_step, rank, world, device, tracker,
          metrics_file, report, init_seconds, guard) -> dict:
    schedule = BatchSchedule(len(dataset), cfg.global_batch, cfg.seed)
    accum = cfg.global_batch // (cfg.micro_batch * world)
    bar = _progress(cfg, start_step, rank)
    # throughput counts the training step only (not logging, evaluation or checkpoints); every
    # rank measures it, so every rank's reports carry it (a searcher may optimise images_per_s)
    window_seconds, window_images, throughputs = 0.0, 0, []
    # wall_s: seconds since the run started (a resumed run continues from its last logged value)
    wall_origin = time.perf_counter() - (_last_wall_seconds(cfg.run_dir, start_step) if rank == 0 else 0.0)
    last_fid, unreported_ckpt = {}, None
    flops_per_image = peak_flops = None
    if rank == 0:
        flops_per_image = train_flops_per_image(objective.model)
        peak_flops = peak_matmul_flops(objective.precision_ran, device)
        tracker.log_metrics({"deepspeed_init_s": init_seconds, "peak_flops_per_s": peak_flops,
                             "train_gflops_per_image": flops_per_image / 1e9}, step=start_step)
        if start_step:
            # what a killed process had queued for MLflow but never sent is in metrics.jsonl
            tracker.backfill(read_metrics(cfg.run_dir))
            tracker.log_metrics({"resumed_from_step": start_step}, step=start_step)
    fid_step = start_step - start_step % cfg.eval_every if cfg.eval_every else 0  # the last FID-k step so far
    if 0 < fid_step < cfg.steps:
        # a resumed run reports its last FID-k again, so that ASHA's rung and Optuna's intermediate
        # value have it (both ignore a step they already got) even when it never reached them (the
        # driver died first), and its next checkpoints are reported with it.  Killed between a FID-k
        # step's checkpoint, which comes first, and its evaluation, it evaluates that step now, from
        # the same EMA weights (evaluation draws from its own generators, never the training's)
        last_fid = _recorded_fid_k(cfg, fid_step, rank) or {}
        if not last_fid and fid_step == start_step:
            last_fid = _fid_k_step(ema, diffusion, cfg, start_step, rank, world, device, tracker, metrics_file,
                                   wall_origin)
        if report and last_fid:
            report({"step": fid_step, **last_fid, "images_per_s": None, "final": False}, None)
    for step in range(start_step, cfg.steps):
        sync_roaming(cfg, step, objective.model, ema)  # MaxRoaming: the masks of this step's period
        step_started = time.perf_counter()
        items = schedule.global_batch(step)
        gen = step_generator(cfg.seed, step)
        t_all, cluster_all = objective.sample_timesteps(cfg.global_batch, gen)
        x_shape = dataset[0][0].shape
        noise_all = torch.randn((cfg.global_batch, *x_shape), generator=gen)
        losses, mses, vbs, priors = [], [], [], []
        for a in range(accum):
            lo = a * cfg.micro_batch * world + rank * cfg.micro_batch
            sl = slice(lo, lo + cfg.micro_batch)
            x, y = load_batch(dataset, shard(items, rank, world, cfg.micro_batch, a))
            torch.manual_seed(step_seed(cfg.seed, step, rank, stream=1 + a))  # label dropout
            loss, logs = engine(x.to(device), y.to(device), t_all[sl].to(device), noise_all[sl].to(device),
                                cluster_all[sl].to(device))
            if not _finite_everywhere(loss, world):
                raise NonFiniteLossError(f"loss became {loss.item()} at step {step + 1} (run {cfg.run_name}); "
                                         "lower lr or check the data")
            combined_backward(engine, objective, loss, logs)  # engine.backward, or ANT's PCGrad / Nash-MTL
            engine.step()
            losses.append(loss.detach().float())
            mses.append(logs["mse"].float())
            vbs.append(logs["vb"].float())
            if "prior" in logs:  # Switch-DiT's diffusion-prior loss
                priors.append(logs["prior"].float())
        update_ema(ema, objective.model, step, engine.optimizer)  # every rank: fp32 master weights
        window_seconds += time.perf_counter() - step_started
        window_images += cfg.global_batch
        done = step + 1
        bar.update(1)
        is_log = done % cfg.log_every == 0 or done == cfg.steps
        if is_log and world > 1:  # log the global batch's loss, not rank 0's share
            losses, mses, vbs = ([all_reduce_mean(torch.stack(v).mean())] for v in (losses, mses, vbs))
        if is_log:
            throughputs.append(window_images / max(window_seconds, 1e-9))
            window_seconds, window_images = 0.0, 0
        if rank == 0 and is_log:
            record = {"step": done, "loss": torch.stack(losses).mean().item(),
                      "mse": torch.stack(mses).mean().item(), "vb": torch.stack(vbs).mean().item(),
                      "images_per_s": throughputs[-1], "wall_s": time.perf_counter() - wall_origin,
                      "model_flops_per_s": throughputs[-1] * flops_per_image,
                      "mfu": throughputs[-1] * flops_per_image / world / peak_flops,
                      "peak_memory_mb": peak_memory_mb(device), "epoch": schedule.epoch_of(done)}
            if priors:
                record["prior"] = torch.stack(priors).mean().item()
            record.update(objective.log_record())  # ANT-UW's s_j, PCGrad / Nash-MTL weights and cosines
            metrics_file.write(record)
            tracker.log_metrics({k: v for k, v in record.items() if k != "step"}, step=done)
            bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{record['images_per_s']:.0f}")
            if bar.disable and cfg.progress and (done % max(cfg.log_every, cfg.steps // 10) == 0
                                                 or done == cfg.steps):  # progress lines when not a tty
                print(f"[{cfg.run_name}] step {done}/{cfg.steps} loss {record['loss']:.4f} "
                      f"{record['images_per_s']:.0f} img/s", flush=True)
        is_eval = cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.steps
        is_ckpt = cfg.ckpt_every and done % cfg.ckpt_every == 0 and done < cfg.steps
        # checkpoint first: an evaluation that fails must not cost the training before it
        if is_ckpt:
            unreported_ckpt = save_checkpoint(engine, ema, cfg, done, rank=rank)
            barrier()
        if is_eval:
            last_fid = _fid_k_step(ema, diffusion, cfg, done, rank, world, device, tracker, metrics_file, wall_origin)
        # every report carries the metric (schedulers and Optuna need it): the newest checkpoint
        # travels with the next FID-k; a retried trial also resumes from newer local checkpoints
        if report and last_fid and (is_eval or is_ckpt):
            report({"step": done, "loss": _last_loss(losses), **last_fid, **_throughput(throughputs),
                    "final": False}, unreported_ckpt)
            unreported_ckpt = None
        if guard.stop_requested(world):  # SIGTERM: checkpoint this step, then exit (preemption.py)
            guard.exit_after(done, os.path.join(cfg.run_dir, "checkpoints", tag_for(done)) if is_ckpt else None,
                             lambda: _checkpoint_now(engine, ema, cfg, done, rank))
    bar.close()
    path = latest_checkpoint(cfg.run_dir)
    # reuse step_<steps> only when it is the checkpoint this run resumed from (a finished run);
    # after any training step it would be a stale checkpoint of an earlier run in the same dir
    if start_step < cfg.steps or path is None or os.path.basename(path) != tag_for(cfg.steps):
        path = save_checkpoint(engine, ema, cfg, cfg.steps, rank=rank)
    barrier()
    guard.release()  # the training is saved: a SIGTERM from here on ends the evaluation at once
    if guard.stop_requested(world):
        guard.exit_after(cfg.steps, path, None)
    final = evaluate_model(_evaluation_weights(ema, cfg, rank, world, device), diffusion, cfg,
                           cfg.final_eval_samples, rank=rank, world=world, device=device, keep_samples=True)
    if rank == 0:
        final = write_final_artifacts(cfg, final, ema.model, tracker)  # the weights it sampled with
    final = broadcast_object({k: v for k, v in final.items() if k != "samples"})
    return {**final, **_throughput(throughputs), "_checkpoint": path}


def _checkpoint_now(engine, ema, cfg: RunConfig, step: int, rank: int) -> str:
    path = save_checkpoint(engine, ema, cfg, step, rank=rank)
    barrier()
    return path


_EVAL_COPIES: dict = {}


def _evaluation_weights(ema, cfg: RunConfig, rank: int, world: int, device):
    """The EMA model on every rank (rank 0 keeps the EMA; the others receive a copy to sample with)."""
    if world == 1:
        return ema.model
    if rank != 0:
        key = (cfg.run_dir, str(device))
        if key not in _EVAL_COPIES:
            _EVAL_COPIES.clear()
            _EVAL_COPIES[key] = model_for(cfg).to(device).float().eval().requires_grad_(False)
        return broadcast_module(_EVAL_COPIES[key])
    return broadcast_module(ema.model)


def _fid_k_step(ema, diffusion, cfg: RunConfig, step: int, rank: int, world: int, device, tracker, metrics_file,
                wall_origin: float) -> dict:
    """The FID-k evaluation of a training step: logged to MLflow and metrics.jsonl by rank 0;
    returns ``{"fid", "fid_k"}`` (the FID-k) on every rank."""
    fid_k, last_fid = _evaluate_during_training(ema, diffusion, cfg, step, rank, world, device), None
    if rank == 0:
        last_fid = {"fid": fid_k["fid"], "fid_k": fid_k["fid"]}
        tracker.log_metrics({"fid_k": fid_k["fid"]}, step=step)
        log_sample_grid(tracker, fid_k.pop("samples", None), step)  # MLflow's image slider
        metrics_file.write({"step": step, "fid_k": fid_k["fid"], "feature_set": fid_k["feature_set"],
                            "wall_s": time.perf_counter() - wall_origin})
    return broadcast_object(last_fid)


def _recorded_fid_k(cfg: RunConfig, step: int, rank: int) -> dict | None:
    """``{"fid", "fid_k"}`` of the FID-k metrics.jsonl holds for ``step`` (None if it holds none),
    on every rank."""
    found = None
    if rank == 0:
        values = [r["fid_k"] for r in read_metrics(cfg.run_dir) if r.get("step") == step and "fid_k" in r]
        found = {"fid": values[-1], "fid_k": values[-1]} if values else None
    return broadcast_object(found)


def _evaluate_during_training(ema, diffusion, cfg: RunConfig, step: int, rank: int, world: int, device) -> dict:
    try:
        return evaluate_model(_evaluation_weights(ema, cfg, rank, world, device), diffusion, cfg, cfg.eval_k,
                              rank=rank, world=world, device=device, keep_samples=True)
    except Exception as err:
        kept = latest_checkpoint(cfg.run_dir)
        raise EvaluationError(f"FID-k evaluation at step {step} failed ({type(err).__name__}: {err}); training up "
                              f"to the newest checkpoint is kept ({kept or 'none yet'}) and a retry resumes "
                              "from it") from err


def _finite_everywhere(loss: torch.Tensor, world: int) -> bool:
    """Whether the loss is finite on every rank (all ranks must stop together, or the healthy
    ones would wait forever in the next all-reduce)."""
    bad = torch.tensor(0.0 if torch.isfinite(loss).item() else 1.0)
    if world > 1:
        import torch.distributed as dist
        bad = bad.to(loss.device)
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    return bad.item() == 0.0


def _last_wall_seconds(run_dir: str, step: int) -> float:
    """The ``wall_s`` of the last record at or before ``step`` (0 for a fresh run)."""
    walls = [r["wall_s"] for r in read_metrics(run_dir) if "wall_s" in r and r.get("step", 0) <= step]
    return walls[-1] if step and walls else 0.0


def _throughput(throughputs: list[float]) -> dict:
    """``images_per_s``: the median training throughput of the run so far (none before the first log)."""
    return {"images_per_s": statistics.median(throughputs)} if throughputs else {}


def _last_loss(losses: list[torch.Tensor]) -> float:
    return torch.stack(losses).mean().item() if losses else math.nan

