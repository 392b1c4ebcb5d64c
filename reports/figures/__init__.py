"""Figures of a sweep (matplotlib, Agg), one module per family.  Each function takes records,
tables or file contents and returns a Figure, or None when the sweep has nothing to show for it
(the report then leaves the figure out); none of them reads or writes a file.

- ``metrics``: metric vs beta / alpha / K with 95% error bars, baselines as bands (paper Fig. 4, Table 4)
- ``convergence``: FID-k vs training step per configuration, and the training loss (paper Fig. 5)
- ``routing``: each routed configuration's mask table; learned routing's expert usage over t
- ``affinity``: a measured task-affinity matrix with its clusters (``python -m platform.affinity``)
- ``weights``: w(t) of the loss weightings present (docs/loss_weighting.md); none if all are vanilla
- ``samples``: the trials' samples.png side by side
- ``bench``: the regression benchmark's step-time ratios over its history
- ``common``: PNG encoding, colours, panel grids
"""
import matplotlib

matplotlib.use("Agg")  # before any submodule imports pyplot: figures are drawn off-screen
