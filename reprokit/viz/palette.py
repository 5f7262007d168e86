"""Display colours for label maps in figures and the inspector.

Masks on disk keep their data sets' encodings (``reprokit.data.palette``: VOC's bit-interleaved palette is
also how VOC masks are read and written). For display, VOC's palette gives the digit scenes' classes 1-10
dark reds, greens and olives that are hard to tell apart (digits 0, 7 and 8 are three shades of red), so the
digit scenes get their own display palette: ten colours picked greedily from a set of well-separated
colours to maximise the smallest CIELAB distance to black (background), the ignore colour and each other.
VOC and Cityscapes keep their familiar palettes.
"""
from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np

from reprokit.data.palette import palette_for as data_palette

# digit d is class d + 1; background (class 0) stays black and ignore (255) VOC's light grey
DIGIT_COLOURS = np.array([(240, 50, 230), (230, 25, 75), (255, 225, 25), (0, 130, 200), (0, 0, 128),
                          (60, 180, 75), (170, 110, 40), (70, 240, 240), (220, 190, 255), (0, 128, 128)],
                         dtype=np.uint8)


def display_palette(dataset: str) -> np.ndarray:
    """[256, 3] uint8 colours for showing label maps of ``dataset`` (index 255 = ignore)."""
    pal = data_palette(dataset).copy()
    if dataset == "digits":
        pal[1:1 + len(DIGIT_COLOURS)] = DIGIT_COLOURS
    return pal


def colorize(label: np.ndarray, dataset: str) -> np.ndarray:
    """HxW label map -> HxWx3 uint8 image in the data set's display palette."""
    return display_palette(dataset)[np.asarray(label, dtype=np.uint8)]


def cielab(rgb) -> np.ndarray:
    """sRGB (0-255, [..., 3]) to CIELAB under D65."""
    c = np.asarray(rgb, dtype=float) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = c @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def closest_pair(colours: np.ndarray) -> tuple[float, int, int]:
    """(the smallest CIELAB distance, Delta E 1976, between two of ``colours``, and their indices)."""
    lab = cielab(colours)
    return min((float(np.linalg.norm(lab[i] - lab[j])), i, j) for i, j in combinations(range(len(lab)), 2))


def render_swatches(out: str | Path, class_names: list[str], dataset: str = "digits") -> Path:
    """A PNG of the classes in the data palette (how masks are stored) and in the display palette, each row
    titled with its closest pair's Delta E: how the palette looks without retraining anything."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(class_names)
    rows = {"stored (VOC palette)": data_palette(dataset)[:n], "display (figures, inspector)": display_palette(dataset)[:n]}
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.0 * n, 1.3 * len(rows)))
    for ax, (title, colours) in zip(axes, rows.items()):
        ax.imshow(colours[None], interpolation="nearest")
        ax.set_xticks(range(n), class_names, fontsize=7)
        ax.set_yticks([])
        d, i, j = closest_pair(colours)
        ax.set_title(f"{title}: closest pair {class_names[i]} / {class_names[j]}, Delta E {d:.0f}", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
