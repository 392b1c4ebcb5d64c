"""Defaults and paths that reproduce the papers (issue 12): ANT-UW's timestep clusters, the paper
preset's cosine schedule, T-sized models, UW invariant to the micro-batch split, ANT-UW inside a
multi-expert member's interval, the EMA of fp32 master weights under bf16, and impossible
configs failing at construction."""
import pytest
import torch

from trainers.config import RunConfig
from trainers.diffusion.gaussian import GaussianDiffusion
from trainers.diffusion.interval_clustering import intervals_cost, l1_cost_matrix, solve_intervals
from trainers.models.from_config import model_for
from trainers.presets import preset_config
from trainers.training.objective import DiffusionObjective, uw_cluster_bounds


# -- 1. ANT-UW clusters: DTR App. C, "timestep-based clustering", K = 8
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_default_ant_uw_clusters_are_eight_equal_timestep_intervals(schedule):
    cfg = RunConfig(weighting="ant_uw", schedule=schedule)
    assert cfg.uw_cluster_method == "timestep" and cfg.uw_clusters == 8
    bounds = uw_cluster_bounds(cfg, GaussianDiffusion(schedule, 1000))
    assert bounds == [(125 * j, 125 * j + 124) for j in range(8)]
    # an optimum of ANT's interval objective with the timestep cost (L1 deviation of tau from the median)
    cost = l1_cost_matrix(range(1000))
    assert intervals_cost(cost, bounds) == intervals_cost(cost, solve_intervals(cost, 8))
    # a stratified batch puts one eighth of its samples above t = 874 (the SNR clusters put none above 62 * 1.0)
    objective = DiffusionObjective(cfg.replace(global_batch=64, micro_batch=64), model_for(cfg), GaussianDiffusion(
        schedule, 1000))
    t, cluster = objective.sample_timesteps(64, torch.Generator().manual_seed(0))
    assert torch.equal(torch.bincount(cluster, minlength=8), torch.full((8,), 8))
    assert (t >= 875).sum() == 8 and (t <= 124).sum() == 8


def test_snr_clusters_stay_an_option_and_are_degenerate_on_linear():
    cfg = RunConfig(weighting="ant_uw", uw_cluster_method="snr")
    bounds = uw_cluster_bounds(cfg, GaussianDiffusion("linear", 1000))
    assert sum(hi <= 62 for _, hi in bounds) == 7  # why it is not the default (docs/loss_weighting.md)


# -- 2. the paper preset trains with the cosine schedule (DTR App. C)
def test_paper_preset_schedule_is_cosine():
    assert preset_config("paper").schedule == "cosine"


# -- 3. model_for builds mask tables and the Switch-DiT prior for T tasks
@pytest.mark.parametrize("model,routing", [("DiT-T/4", "dtr"), ("DiT-T/4", "random"), ("ADM-T", "dtr"),
                                           ("DiT-T/4", "learned"), ("DiT-T/4", "learned_window")])
def test_model_for_uses_num_timesteps(model, routing):
    net = model_for(RunConfig(model=model, routing=routing, num_timesteps=100, sample_steps=10))
    if routing == "learned":
        assert net.router.prior_table.shape[0] == 100 and net.router.num_timesteps == 100
    elif routing == "learned_window":
        assert net.router.mask_table().shape[0] == 100
    else:
        assert net.routing_masks.shape[1] == 100
    net.eval()(torch.zeros(2, 1, 32, 32), torch.tensor([0, 99]), torch.tensor([1, 2]))  # last task indexes


# -- 4. ANT-UW: the same objective whatever the micro-batch split
def _uw_objective(micro_batch, **kw):
    cfg = RunConfig(model="DiT-T/4", image_size=8, class_cond=False, weighting="ant_uw", uw_clusters=4,
                    global_batch=16, micro_batch=micro_batch, **kw)
    torch.manual_seed(0)
    from trainers.models import build_model
    model = build_model("DiT-T/4", input_size=8, in_channels=1, num_classes=1)
    with torch.no_grad():  # non-zero output layer: a loss that depends on the weights
        model.final_layer.linear.weight.normal_(0, 0.05)
    objective = DiffusionObjective(cfg, model, GaussianDiffusion("linear", 1000))
    with torch.no_grad():
        objective.uw.log_vars.copy_(torch.tensor([0.3, -0.2, 0.1, 0.5]))
    return cfg, objective


def test_uw_objective_is_invariant_to_the_micro_batch_split():
    gen = torch.Generator().manual_seed(3)
    results = []
    for micro in (16, 4):
        _, objective = _uw_objective(micro)
        t, cluster = objective.sample_timesteps(16, torch.Generator().manual_seed(1))
        x0, noise = torch.randn(16, 1, 8, 8, generator=gen.manual_seed(3)), torch.randn(16, 1, 8, 8, generator=gen)
        parts = 16 // micro
        total = 0.0
        for a in range(parts):  # DeepSpeed: every micro-batch's loss / accumulation steps, summed
            sl = slice(a * micro, (a + 1) * micro)
            loss, _ = objective(x0[sl], None, t[sl], noise[sl], cluster[sl])
            (loss / parts).backward()
            total += loss.item() / parts
        results.append((total, objective.uw.log_vars.grad.clone(),
                        objective.model.final_layer.linear.weight.grad.clone()))
    (l1, gs1, gw1), (l4, gs4, gw4) = results
    assert l4 == pytest.approx(l1, rel=1e-6)
    assert torch.allclose(gs4, gs1, atol=1e-7) and torch.allclose(gw4, gw1, atol=1e-7)
    # the global objective itself: sum_j 0.5 (exp(-s_j) Lbar_j / K + s_j) with Lbar_j over the whole batch
    assert gs1.abs().min() > 0


def test_uw_refuses_a_micro_batch_of_another_size():
    _, objective = _uw_objective(4)
    t, cluster = objective.sample_timesteps(16, torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="micro_batch=4"):
        objective(torch.randn(8, 1, 8, 8), None, t[:8], torch.randn(8, 1, 8, 8), cluster[:8])


# -- 5. ANT-UW in a multi-expert member: K clusters inside the member's interval
@pytest.mark.parametrize("method", ["timestep", "equal", "snr"])
def test_ant_uw_clusters_lie_in_the_expert_interval(method):
    cfg = RunConfig(weighting="ant_uw", uw_cluster_method=method, expert_t_lo=250, expert_t_hi=499)
    diffusion = GaussianDiffusion("cosine", 1000)
    bounds = uw_cluster_bounds(cfg, diffusion)
    assert len(bounds) == 8 and bounds[0][0] == 250 and bounds[-1][1] == 499
    assert all(b[0] == a[1] + 1 for a, b in zip(bounds, bounds[1:]))
    if method != "snr":
        assert {hi - lo + 1 for lo, hi in bounds} == {31, 32}
    objective = DiffusionObjective(cfg, model_for(cfg), diffusion)
    t, _ = objective.sample_timesteps(cfg.global_batch, torch.Generator().manual_seed(0))
    assert t.min() >= 250 and t.max() <= 499


def test_ant_uw_needs_a_timestep_per_cluster_in_each_member():
    with pytest.raises(ValueError, match="uw_clusters=8 must be <= the 5 timesteps"):
        RunConfig(weighting="ant_uw", expert_t_lo=10, expert_t_hi=14)
    with pytest.raises(ValueError, match="each of the 4 expert intervals"):
        RunConfig(weighting="ant_uw", multi_expert_n=4, num_timesteps=20, uw_clusters=8, sample_steps=10)


# -- 7. the EMA of a bf16 run averages the fp32 master weights
@pytest.mark.parametrize("stage", [0, 1])
def test_bf16_ema_tracks_the_fp32_master_weights(train_env, stage):
    import deepspeed

    from trainers.training.distributed import ensure_single_process_env, init_deepspeed_distributed
    from trainers.training.ema import EMA, update_ema
    from trainers.training.loop import deepspeed_config
    ensure_single_process_env()
    init_deepspeed_distributed("cpu")
    cfg = RunConfig(model="DiT-T/4", image_size=8, class_cond=False, global_batch=8, micro_batch=8, lr=3e-3,
                    precision="bf16", ema_decay=0.5, zero_stage=stage)
    from trainers.models import build_model
    torch.manual_seed(0)
    model = build_model("DiT-T/4", input_size=8, in_channels=1, num_classes=1)
    objective = DiffusionObjective(cfg, model, GaussianDiffusion("linear", 1000), "bf16")
    ema = EMA(model, cfg.ema_decay)
    upcast = EMA(model, cfg.ema_decay)  # what the EMA was before: the bf16 parameters, upcast
    optimizer = torch.optim.AdamW(objective.param_groups(), lr=cfg.lr, weight_decay=0.0)
    engine, *_ = deepspeed.initialize(model=objective, optimizer=optimizer, config=deepspeed_config(cfg, 1, "bf16"))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    trainable = [dict(model.named_parameters())[n] for n in names]
    assert trainable[0].dtype == torch.bfloat16
    reference = [dict(ema.model.named_parameters())[n].detach().clone() for n in names]
    gen = torch.Generator().manual_seed(0)
    for step in range(6):
        t = torch.randint(0, 1000, (8,), generator=gen)
        loss, _ = engine(torch.randn(8, 1, 8, 8, generator=gen), None, t, torch.randn(8, 1, 8, 8, generator=gen),
                         torch.zeros(8, dtype=torch.long))
        engine.backward(loss)
        engine.step()
        update_ema(ema, model, step, engine.optimizer)
        upcast.update(model, step)
        master = _master_of(engine.optimizer, stage, trainable)
        reference = [0.5 * r + 0.5 * m for r, m in zip(reference, master)]
    got = [dict(ema.model.named_parameters())[n] for n in names]
    old = [dict(upcast.model.named_parameters())[n] for n in names]
    assert all(g.dtype == torch.float32 for g in got)
    err = max((g - r).abs().max().item() for g, r in zip(got, reference))
    old_err = max((o - r).abs().max().item() for o, r in zip(old, reference))
    assert err < 1e-7 and old_err > 1e-5  # the bf16 upcast misses the master weights by bf16 rounding


def _master_of(optimizer, stage, trainable):
    """The optimizer's fp32 master copy of the model's trainable parameters, read from its own groups."""
    if stage == 0:  # FP16_UnfusedOptimizer: per-parameter fp32 copies beside the bf16 ones
        pairs = {id(lp): hp for lps, hps in zip(optimizer.fp16_groups, optimizer.fp32_groups)
                 for lp, hp in zip(lps, hps)}
        return [pairs[id(p)].detach().float().clone() for p in trainable]
    flat = optimizer.single_partition_of_fp32_groups[0]  # ZeRO-1, one rank: the whole flat fp32 group
    out, offset = {}, 0
    for p in optimizer.bit16_groups[0]:
        out[id(p)] = flat[offset:offset + p.numel()].view_as(p).detach().float().clone()
        offset += p.numel()
    return [out[id(p)] for p in trainable]


# -- 10. impossible configs fail when built, with one line
@pytest.mark.parametrize("fields,words", [
    (dict(routing="cdtr", routing_clusters=2000), "routing_clusters=2000"),
    (dict(model="DiT-Q/9"), "unknown model 'DiT-Q/9'"),
    (dict(model="DiT-S/8", image_size=28), "multiple of 8"),
    (dict(model="ADM-T", routing="learned"), "DiT only"),
    (dict(global_batch=64, micro_batch=24), "multiple of micro_batch=24"),
    (dict(routing="ercdt", routing_clusters=65, model="DiT-T/4"), "ercdt"),
    (dict(schedule="quadratic"), "schedule"),
    (dict(sample_steps=2000), "sample_steps"),
])
def test_impossible_configs_fail_at_construction(fields, words):
    with pytest.raises(ValueError, match=words) as info:
        RunConfig(**fields)
    assert "\n" not in str(info.value)


def test_cli_dry_run_rejects_impossible_configs(capsys):
    import subprocess
    import sys

    from trainers.training.cli import main
    assert main(["--dry-run", "--model", "DiT-Q/9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown model" in err[0]
    proc = subprocess.run([sys.executable, "-m", "trainers.train", "--dry-run", "--routing", "cdtr",
                           "--routing-clusters", "2000"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "routing_clusters=2000" in proc.stderr
