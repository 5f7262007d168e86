"""What the digit scenes and the glyph pretraining set draw on: textured backgrounds and ink colours that stand
out from them. Shared so that the pretraining sees the scenes' backgrounds, and kept apart from both data sets so
that neither imports the other."""
from __future__ import annotations

import numpy as np
from PIL import Image


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth coloured noise plus oriented stripes: texture the network must learn to ignore."""
    base = rng.uniform(0, 255, size=3)
    coarse = rng.normal(0, 30, size=(4, 4, 3)).astype(np.float32)
    noise = np.asarray(
        Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize((size, size), Image.BICUBIC),
        dtype=np.float32,
    ) - 128
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta, freq = rng.uniform(0, np.pi), rng.uniform(0.1, 0.6)
    stripes = np.sin(freq * (xx * np.cos(theta) + yy * np.sin(theta)) + rng.uniform(0, 2 * np.pi))
    stripe_colour = rng.normal(0, 15, size=3)
    grain = rng.normal(0, 6, size=(size, size, 3))
    return base + noise + stripes[..., None] * stripe_colour + grain


def contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random colour whose mean brightness sits about 80 grey levels or more away from the local
    background, so the digit's shape is visible; its hue stays random and carries no class information."""
    colour = rng.uniform(0, 255, size=3)
    bg = background.mean()
    if abs(colour.mean() - bg) < 80:
        target = bg + 80 if bg < 128 else bg - 80
        colour = np.clip(colour - colour.mean() + target, 0, 255)
    return colour
