"""Routing of a text-conditional DiT (paper App. C, the MS-COCO column of Table 1): vanilla, R-TR and
DTR at the paper's alpha as baselines, and DTR's shift power alpha searched at beta = 0.8.

The text setting comes from the budget: ``text-laptop`` (captioned Fashion-MNIST, DiT-T/4-text,
the offline MiniLM encoder) or ``coco`` (MS-COCO latents, DiT-B/2-text, CLIP ViT-L/14 tokens).
"""
from search_spaces.base import Float, SearchSpace

SPACE = SearchSpace(
    name="text_routing",
    description="text-conditional DiT: vanilla / R-TR / DTR baselines and DTR alpha in [0.5, 6] at beta=0.8 "
                "(use --budget text-laptop or coco)",
    params={"alpha": Float(0.5, 6.0, step=0.5)},
    base={"routing": "dtr", "beta": 0.8, "alpha": 4.0},
    baselines={"vanilla": {"routing": "none"}, "R-TR": {"routing": "random"}, "DTR": {"routing": "dtr"}},
    num_trials=6,
)
