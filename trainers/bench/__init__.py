"""The worker side of the regression benchmark: what is measured and how it is timed.

    cases.py     the fixed, named suite (speed and quality cases, at scale "full" or "tiny") and
                 the fingerprints that tie a baseline entry to a case definition
    measure.py   :func:`~trainers.bench.measure.interleave`, the round-robin timing, and a runner per
                 speed case (sampling batch, FID evaluation, GEMM chain, matmul peak)
    steps.py     the training-step runners (the real DeepSpeed path; a preset's step with its FLOPs)
    startup.py   fresh processes launched one by one: a training process to its first step,
                 import deepspeed + init_distributed (the child is ``dsinit.py``)
    gpu_check.py the GPU check (``--suite gpu``): bf16 DiT-B/2 / DiT-L/2 throughput, MFU against a
                 GEMM peak, DTR/vanilla step ratio, sampling img/s; imports only torch and numpy

Everything that drives a run lives in ``platform/bench`` (``python -m platform.bench``): the
options, the speed and quality suites built from these cases, the noise bands and the baseline
gate, the printed table, MLflow logging and the history (see platform/bench/__init__.py, which
also tells how to schedule it).  Nothing here imports ``platform``.
"""
