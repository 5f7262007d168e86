"""Glyphs: an embedded classification set for pretraining the CPU backbone, disjoint from the digits.

Pretraining should teach the narrow ResNet strokes, curves, junctions and figure/ground on the digit
scenes' textured backgrounds without teaching it the digits themselves, so the classes are letters,
Greek letters and symbols, and every glyph that a reader could take for a digit is left out:

- ``0``: O o Q D Θ Φ @ (closed ovals); ``1``: I i J j L l | ! (a single upright stroke);
  ``2``: Z z ? (top hook over a base or a stem); ``3``: ε (a mirrored 3); ``5``: S s $ §;
  ``6``: G b d δ (a loop under a curved or straight stem); ``7``: T t Γ (a bar over a stem);
  ``8``: B ß β & ∞ (two stacked or side-by-side loops); ``9``: g q (a loop over a descender).

Glyphs are scaled to a fixed size (their longer side is the height drawn), so a lower-case letter
that only differs from its capital in size would be an unlearnable duplicate: c k p u v w x are
dropped for that reason, as are ``a`` (the italic single-storey a is an α) and ± (a +).

Glyphs come from the TrueType fonts inside matplotlib's own package (never the system's), so the set
is identical on every machine that has the same matplotlib fonts; their hashes go into the provenance.
Each image is drawn from its own seeded generator, so the set does not depend on the order of drawing.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from reprokit.data.canvas import background, contrasting_colour

FONT_FILES = (  # sorted; the italic STIX faces lack the arrows and Computer Modern lacks the Greek letters
    "DejaVuSans-Bold.ttf", "DejaVuSans-BoldOblique.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans.ttf",
    "DejaVuSansMono-Bold.ttf", "DejaVuSansMono.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSerif-Italic.ttf", "DejaVuSerif.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf",
)
CLASSES = tuple("ACEFHKMNPRUVWXY" "efhmnry" "ΔΠΣΩαλμπψω" "#%*+<=>~¥÷€←→")
EXCLUDED = {  # digit -> glyphs left out because they read as that digit (see the module docstring)
    "0": "OoQDΘΦ@", "1": "IiJjLl|!", "2": "Zz?", "3": "ε", "5": "Ss$§", "6": "Gbdδ", "7": "TtΓ",
    "8": "Bßβ&∞", "9": "gq",
}
DUPLICATES = "ckpuvwxa±"  # near copies of a kept class once glyphs are scaled to one size
MASTER_SIZE = 40  # font size of the master renderings that every image is resampled from
STROKE_FILTERS = (1, 3)  # max-filter sizes on the master: the stroke stays or grows by ~1 px (5 fills small loops)


@dataclass(frozen=True)
class GlyphSetSpec:
    n_train_per_class: int = 500
    n_heldout_per_class: int = 50
    size: int = 48
    min_height: int = 16  # drawn size of the glyph's longer side, the digit scenes' digit heights
    max_height: int = 26
    max_rotation: float = 15.0  # degrees
    max_shear: float = 0.25
    max_shift: int = 6  # pixels of the glyph centre from the image centre, less where the glyph would leave it
    max_blur: float = 0.8  # Gaussian radius: the digits are upscaled 8x8 bitmaps, softer than font outlines
    seed: int = 0


@dataclass
class GlyphSet:
    x_train: np.ndarray  # N x H x W x 3 uint8
    y_train: np.ndarray  # N int64 indices into CLASSES
    x_heldout: np.ndarray
    y_heldout: np.ndarray


def font_paths() -> list[Path]:
    """The fonts of :data:`FONT_FILES` inside matplotlib's package; a missing one is an error naming it."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    missing = [name for name in FONT_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"matplotlib fonts missing from {folder}: {missing} (needed by the glyph set)")
    return [folder / name for name in FONT_FILES]


def describe(spec: GlyphSetSpec) -> dict:
    """Everything that determines the set: the spec, classes, exclusions, and each font's sha256."""
    return {
        "spec": asdict(spec),
        "classes": list(CLASSES),
        "excluded": EXCLUDED,
        "duplicates": DUPLICATES,
        "fonts": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in font_paths()},
        "master_size": MASTER_SIZE,
        "stroke_filters": list(STROKE_FILTERS),
    }


def render_masters() -> list[list[Image.Image]]:
    """masters[class][font]: the glyph drawn white on black at :data:`MASTER_SIZE`, cropped to its ink."""
    fonts = [ImageFont.truetype(str(p), MASTER_SIZE) for p in font_paths()]
    masters = []
    for char in CLASSES:
        row = []
        for font in fonts:
            canvas = Image.new("L", (3 * MASTER_SIZE, 3 * MASTER_SIZE), 0)
            ImageDraw.Draw(canvas).text((MASTER_SIZE, MASTER_SIZE), char, fill=255, font=font)
            row.append(canvas.crop(canvas.getbbox()))
        masters.append(row)
    return masters


def _glyph_alpha(rng: np.random.Generator, spec: GlyphSetSpec, master: Image.Image) -> np.ndarray:
    """Random stroke width, size, rotation, shear and shift of one master -> alpha map in [0, 1]."""
    stroke = int(rng.choice(STROKE_FILTERS))
    if stroke > 1:
        master = master.filter(ImageFilter.MaxFilter(stroke))
    w, h = master.size
    scale = rng.integers(spec.min_height, spec.max_height + 1) / max(w, h)
    theta = np.deg2rad(rng.uniform(-spec.max_rotation, spec.max_rotation))
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    shear = np.array([[1.0, rng.uniform(-spec.max_shear, spec.max_shear)], [0.0, 1.0]])
    forward = scale * rotation @ shear  # master (x, y) offsets from its centre -> image offsets
    corners = forward @ np.array([[-w, w, w, -w], [-h, -h, h, h]]) / 2
    room = np.maximum(0, (spec.size - (corners.max(1) - corners.min(1))) / 2)
    shift = rng.uniform(-1, 1, size=2) * np.minimum(spec.max_shift, room)
    centre = spec.size / 2 + shift
    inverse = np.linalg.inv(forward)  # PIL maps each output pixel back into the master
    offset = np.array([w, h]) / 2 - inverse @ centre
    coeffs = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    out = master.transform((spec.size, spec.size), Image.AFFINE, coeffs, resample=Image.BILINEAR)
    out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0, spec.max_blur)))
    return np.asarray(out, dtype=np.float32) / 255


def render_glyph(rng: np.random.Generator, spec: GlyphSetSpec, masters: list,
                 label: int) -> tuple[np.ndarray, np.ndarray]:
    """One image of class ``label`` in a random font: (HxWx3 uint8 image, HxW alpha of the glyph)."""
    alpha = _glyph_alpha(rng, spec, masters[label][rng.integers(len(FONT_FILES))])
    canvas = background(rng, spec.size)
    under = (canvas * alpha[..., None]).sum((0, 1)) / max(alpha.sum(), 1e-6)
    colour = contrasting_colour(rng, under)
    canvas = canvas * (1 - alpha[..., None]) + colour * alpha[..., None]
    return np.clip(canvas, 0, 255).astype(np.uint8), alpha


def _render_split(spec: GlyphSetSpec, masters: list, split_id: int, per_class: int, bar) -> tuple:
    labels = np.arange(per_class * len(CLASSES)) % len(CLASSES)
    images = np.empty((len(labels), spec.size, spec.size, 3), np.uint8)
    for i, label in enumerate(labels):
        images[i] = render_glyph(np.random.default_rng([spec.seed, split_id, i]), spec, masters, int(label))[0]
        bar.update()
    return images, labels.astype(np.int64)


def build_glyph_set(spec: GlyphSetSpec | None = None, progress: bool = False) -> GlyphSet:
    """Draw the train and held-out images in memory, classes balanced (image i has class i mod C)."""
    from tqdm.auto import tqdm

    spec = spec or GlyphSetSpec()
    masters = render_masters()
    total = (spec.n_train_per_class + spec.n_heldout_per_class) * len(CLASSES)
    with tqdm(total=total, desc="glyphs", disable=not progress, leave=False) as bar:
        x_train, y_train = _render_split(spec, masters, 0, spec.n_train_per_class, bar)
        x_heldout, y_heldout = _render_split(spec, masters, 1, spec.n_heldout_per_class, bar)
    return GlyphSet(x_train, y_train, x_heldout, y_heldout)
