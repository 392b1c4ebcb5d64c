"""One rank of the 1-vs-2-rank evaluation test (tests/test_eval_ranks.py): started as a plain
process with RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set, it scores the given
weights with every rank sampling its share and rank 0 saves the scores and the sample grid."""
import json
import sys

import torch
import torch.distributed as dist

from trainers.config import RunConfig
from trainers.diffusion.gaussian import GaussianDiffusion
from trainers.evaluation.evaluate import evaluate_model
from trainers.models.from_config import model_for


def main(cfg_json: str, weights: str, n: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    cfg = RunConfig(**json.loads(cfg_json))
    model = model_for(cfg).eval()
    model.load_state_dict(torch.load(weights))
    diffusion = GaussianDiffusion(cfg.schedule, cfg.num_timesteps, learn_sigma=cfg.learn_sigma)
    result = evaluate_model(model, diffusion, cfg, n, rank=dist.get_rank(), world=dist.get_world_size(),
                            keep_samples=True)
    if dist.get_rank() == 0:
        torch.save(result, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
