"""The worker side of the regression benchmark: what is measured and how it is timed.

    cases.py     the fixed, named suite (speed and quality cases, at scale "full" or "tiny") and
                 the fingerprints that tie a baseline entry to a case definition
    measure.py   a runner per speed case (one real training step, sampling batch, FID evaluation,
                 GEMM chain) and :func:`~trainers.bench.measure.interleave`, the round-robin timing

Everything that drives a run lives in ``platform/bench`` (``python -m platform.bench``): the
options, the speed and quality suites built from these cases, the noise bands and the baseline
gate, the printed table, MLflow logging and the history (see platform/bench/__init__.py, which
also tells how to schedule it).  Nothing here imports ``platform``.
"""
