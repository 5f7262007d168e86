"""Colour palettes for label maps (Pascal VOC's bit-interleaved palette, Cityscapes' official colours)."""
from __future__ import annotations

import numpy as np

from reprokit.labels import IGNORE_INDEX


def voc_palette(n: int = 256) -> np.ndarray:
    """Pascal VOC palette as an [n, 3] uint8 array; index 255 is the VOC boundary colour (224, 224, 192)."""
    pal = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        pal[i] = (r, g, b)
    if n > IGNORE_INDEX:
        pal[IGNORE_INDEX] = (224, 224, 192)
    return pal


CITYSCAPES_COLOURS = np.array(
    [(128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
     (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
     (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)],
    dtype=np.uint8,
)


def palette_for(dataset: str) -> np.ndarray:
    """[256, 3] palette used to colour label maps of ``dataset`` (ignore = light grey)."""
    pal = voc_palette(256)
    if dataset == "cityscapes":
        pal[: len(CITYSCAPES_COLOURS)] = CITYSCAPES_COLOURS
    return pal


def colorize(label: np.ndarray, dataset: str) -> np.ndarray:
    """HxW label map -> HxWx3 uint8 image in the dataset's palette."""
    return palette_for(dataset)[np.asarray(label, dtype=np.uint8)]
