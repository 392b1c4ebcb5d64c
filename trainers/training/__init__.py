"""Training: the DeepSpeed loop, its objective, batches, EMA, checkpoints, distributed helpers,
run logging, the multi-expert baseline, the command line and the Ray Tune trainable.
Start at run.py (``train``)."""
