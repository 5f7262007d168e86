"""Augmentations. Every random draw comes from an explicit generator so that a sample's augmentation
is a pure function of (seed, position in the data stream): exact resume needs no worker RNG state.

- weak (joint image + label maps): random scale, pad-and-crop (pad label 255), horizontal flip; sparse
  labels (points, scribbles) keep every labeled pixel through the scaling;
- strong (image only): colour jitter, random grayscale, Gaussian blur;
- CutMix box masks over a batch, returned so a method mixes teacher outputs with the same boxes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from reprokit.labels import IGNORE_INDEX


@dataclass
class WeakAug:
    """Random scale, pad-and-crop and horizontal flip of an image and the label maps that go with it.

    ``labels`` maps a name to an HxW uint8 map. Dense maps are resized nearest-neighbour. Sparse maps (names in
    ``sparse``: a class id at few pixels, ``sparse_unlabeled`` elsewhere) are resized so that no labeled pixel
    is lost (:func:`resize_sparse`): nearest-neighbour drops a point when the image shrinks. Padding is 255 in
    every map."""

    crop_size: int
    scale_range: Sequence[float] = (0.5, 2.0)
    scale_choices: Optional[Sequence[float]] = None
    flip: bool = True
    sparse: tuple[str, ...] = ("sparse",)
    sparse_unlabeled: int = IGNORE_INDEX

    def __call__(self, image: Image.Image, labels: dict[str, np.ndarray], rng: np.random.Generator):
        """(crop HxWx3 uint8, {name: cropped map}, valid HxW bool), a function of ``rng``'s state alone."""
        if self.scale_choices:
            scale = float(rng.choice(list(self.scale_choices)))
        else:
            scale = float(rng.uniform(*self.scale_range))
        w, h = image.size
        nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
        image = image.resize((nw, nh), Image.BILINEAR)
        img = np.array(image, dtype=np.uint8)
        resized = {name: resize_sparse(lab, (nw, nh), self.sparse_unlabeled) if name in self.sparse
                   else np.asarray(Image.fromarray(lab).resize((nw, nh), Image.NEAREST), dtype=np.uint8)
                   for name, lab in labels.items()}
        img, cropped, valid = pad_crop(img, resized, self.crop_size, rng)
        if self.flip and rng.random() < 0.5:
            img, valid = img[:, ::-1], valid[:, ::-1]
            cropped = {name: lab[:, ::-1] for name, lab in cropped.items()}
        return (np.ascontiguousarray(img), {name: np.ascontiguousarray(lab) for name, lab in cropped.items()},
                valid.copy())


def resize_sparse(sparse: np.ndarray, size: tuple[int, int], unlabeled: int) -> np.ndarray:
    """A sparse label map resized to ``size`` (width, height) keeping every labeled pixel and every ignored
    one (255 in a label file: excluded from training, unlike unlabeled pixels, which some methods use).
    Enlarging, nearest-neighbour samples every source pixel at least once. Shrinking, it would skip most of them,
    so each labeled or ignored pixel is written at the position of its centre in the new grid instead (one pixel
    per source pixel; where two land on one pixel, a labeled one wins over an ignored one, and among labeled
    ones the later in row-major order)."""
    nw, nh = size
    h, w = sparse.shape
    if nw >= w and nh >= h:
        return np.asarray(Image.fromarray(sparse).resize((nw, nh), Image.NEAREST), dtype=np.uint8)
    out = np.full((nh, nw), unlabeled, np.uint8)
    for kept in (sparse == IGNORE_INDEX, (sparse != unlabeled) & (sparse != IGNORE_INDEX)):  # labels written last
        ys, xs = np.nonzero(kept)
        ny = np.minimum(((ys + 0.5) * nh / h).astype(np.int64), nh - 1)
        nx = np.minimum(((xs + 0.5) * nw / w).astype(np.int64), nw - 1)
        out[ny, nx] = sparse[ys, xs]
    return out


def pad_crop(img: np.ndarray, labels: dict[str, np.ndarray], crop: int, rng: np.random.Generator):
    """Pad to at least ``crop`` (image 0, label maps 255), then take one random crop of all of them.

    Also returns the boolean map of real (non-padding) pixels, which unlabeled images need since
    they have no label to carry the padding as 255.
    """
    h, w = img.shape[:2]
    ph, pw = max(crop - h, 0), max(crop - w, 0)
    valid = np.ones((h, w), bool)
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)))
        valid = np.pad(valid, ((0, ph), (0, pw)))
        labels = {name: np.pad(lab, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX) for name, lab in labels.items()}
    h, w = img.shape[:2]
    y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    sl = (slice(y, y + crop), slice(x, x + crop))
    return img[sl], {name: lab[sl] for name, lab in labels.items()}, valid[sl]


@dataclass
class StrongAug:
    """Photometric perturbation for the strong view (geometry unchanged, so labels still align)."""

    jitter_p: float = 0.8
    brightness: float = 0.5
    contrast: float = 0.5
    saturation: float = 0.5
    hue: float = 0.25
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: Sequence[float] = (0.1, 2.0)

    def __call__(self, img: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """``img``: float tensor 3xHxW in [0, 1]."""
        if rng.random() < self.jitter_p:
            img = TF.adjust_brightness(img, float(rng.uniform(1 - self.brightness, 1 + self.brightness)))
            img = TF.adjust_contrast(img, float(rng.uniform(1 - self.contrast, 1 + self.contrast)))
            img = TF.adjust_saturation(img, float(rng.uniform(1 - self.saturation, 1 + self.saturation)))
            img = TF.adjust_hue(img, float(rng.uniform(-self.hue, self.hue)))
        if rng.random() < self.grayscale_p:
            img = TF.rgb_to_grayscale(img, num_output_channels=3)
        if rng.random() < self.blur_p:
            sigma = float(rng.uniform(*self.blur_sigma))
            k = max(3, int(2 * round(2 * sigma) + 1))
            img = TF.gaussian_blur(img, [k, k], [sigma, sigma])
        return img.clamp(0, 1)


def cutmix_box_masks(batch: int, height: int, width: int, n_boxes: int = 3,
                     area_range: Sequence[float] = (0.25, 0.5),
                     generator: Optional[torch.Generator] = None, device=None) -> torch.Tensor:
    """Boolean [B, H, W] masks, True where the strong view takes pixels from the partner image.

    For each image a total area proportion p ~ U(area_range) is drawn and split evenly over
    ``n_boxes`` boxes (each of area p / n_boxes of the image, random aspect ratio in [0.5, 2],
    placed fully inside the image; boxes may overlap). STPG uses 3 boxes and 0.25-0.5.
    """
    lo, hi = area_range
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"area_range must satisfy 0 < low <= high <= 1, got {area_range}")
    g = generator
    rand = lambda *s: torch.rand(*s, generator=g)  # noqa: E731 - local shorthand
    props = lo + (hi - lo) * rand(batch, 1)
    area = props / n_boxes
    log_ratio = (rand(batch, n_boxes) * 2 - 1) * np.log(2.0)
    ratio = torch.exp(log_ratio)
    bh = (torch.sqrt(area * ratio) * height).clamp(1, height).round().long()
    bw = (torch.sqrt(area / ratio) * width).clamp(1, width).round().long()
    y0 = (rand(batch, n_boxes) * (height - bh + 1)).floor().long()
    x0 = (rand(batch, n_boxes) * (width - bw + 1)).floor().long()
    ys = torch.arange(height).view(1, 1, height, 1)
    xs = torch.arange(width).view(1, 1, 1, width)
    inside = ((ys >= y0[..., None, None]) & (ys < (y0 + bh)[..., None, None])
              & (xs >= x0[..., None, None]) & (xs < (x0 + bw)[..., None, None]))
    return inside.any(dim=1).to(device) if device is not None else inside.any(dim=1)


def mix(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Take ``b`` where ``mask`` is True, else ``a``; ``mask`` is [B, H, W], inputs [B, ..., H, W] or [B, H, W]."""
    m = mask
    while m.dim() < a.dim():
        m = m.unsqueeze(1)
    return torch.where(m, b, a)


def normalize(img: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    return TF.normalize(img, list(mean), list(std))
