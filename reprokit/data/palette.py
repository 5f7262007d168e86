"""Colour palettes for label maps: Pascal VOC's bit-interleaved palette, and each data set's own."""
from __future__ import annotations

import numpy as np

from reprokit.data import dataset as registered_dataset
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


def palette_for(dataset: str) -> np.ndarray:
    """[256, 3] palette used to colour label maps of ``dataset`` (its registry entry's; ignore = light grey)."""
    return registered_dataset(dataset).palette()


def colorize(label: np.ndarray, dataset: str) -> np.ndarray:
    """HxW label map -> HxWx3 uint8 image in the dataset's palette."""
    return palette_for(dataset)[np.asarray(label, dtype=np.uint8)]
