"""One rank of the ZeRO-0 vs ZeRO-3 EMA test (tests/test_faults.py): started as a plain process
with RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set, it trains the same smoke config under
ZeRO stage 0 and then stage 3 (one gloo group, two runs) into RUNS/zero0 and RUNS/zero3."""
import os
import sys

from trainers.presets import preset_config
from trainers.training.run import train


def main(runs: str, steps: int) -> None:
    for stage in (0, 3):
        name = f"zero{stage}"
        cfg = preset_config("smoke", run_name=name, run_dir=os.path.join(runs, name), zero_stage=stage, steps=steps,
                            ckpt_every=0, global_batch=16, micro_batch=8, final_eval_samples=0)
        train(cfg, mlflow_enabled=False, threads=1)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
