"""A small generated class-folder image tree (PNG) for offline tests and demos.

    write_synthetic_image_folder("data/shapes", classes=4, per_class=8, size=32, seed=0)
    build_dataset("imagenet_folder", root="data/shapes", image_size=32)

Class ``k`` is one shape (disc, square, triangle, cross, ring, bar, ...) in one hue, drawn at a
random place and size on a random light background: easy to tell apart, not pure noise. The
files are a pure function of the arguments (same bytes every time).
"""
from __future__ import annotations

import colorsys
import os

import numpy as np

SHAPES = ("disc", "square", "triangle", "cross", "ring", "bar")


def _draw(draw, shape: str, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    w = max((x1 - x0) // 4, 1)
    if shape == "disc":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=colour)
    elif shape == "cross":
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        draw.rectangle((cx - w // 2, y0, cx + w // 2, y1), fill=colour)
        draw.rectangle((x0, cy - w // 2, x1, cy + w // 2), fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=w)
    else:
        draw.rectangle((x0, (y0 + y1) // 2 - w // 2, x1, (y0 + y1) // 2 + w // 2), fill=colour)


def write_synthetic_image_folder(root: str, *, classes: int = 4, per_class: int = 8, size: int = 32,
                                 seed: int = 0) -> list[str]:
    """Write ``<root>/class_KK/img_IIII.png`` (RGB, ``size`` x ``size``); returns the paths, sorted."""
    from PIL import Image, ImageDraw
    if classes < 1 or per_class < 1 or size < 8:
        raise ValueError(f"need classes >= 1, per_class >= 1 and size >= 8, got {classes}, {per_class}, {size}")
    paths = []
    for k in range(classes):
        hue = (k * 0.618034) % 1.0
        colour = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, 0.8))
        folder = os.path.join(root, f"class_{k:02d}")
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            rng = np.random.default_rng([seed, k, i])
            background = tuple(int(v) for v in rng.integers(170, 256, size=3))
            image = Image.new("RGB", (size, size), background)
            side = int(rng.integers(size // 3, size * 3 // 4 + 1))
            x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, size=2))
            _draw(ImageDraw.Draw(image), SHAPES[k % len(SHAPES)], (x0, y0, x0 + side - 1, y0 + side - 1), colour)
            path = os.path.join(folder, f"img_{i:04d}.png")
            image.save(path, format="PNG")
            paths.append(path)
    return paths
