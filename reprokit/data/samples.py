"""Reading one sample's files and judging them: every data loader and every data check goes through
these functions, so a file is accepted or refused the same way wherever it is read.

Errors name the file, what was expected, and the split list line that brought the sample in.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from reprokit.config import DataConfig
from reprokit.data import dataset as registered_dataset
from reprokit.data.errors import DataError, ImageError, LabelError, MaskError, SizeError
from reprokit.data.images import header_size, open_whole
from reprokit.data.splits import Sample
from reprokit.labels import check_label_values


@contextmanager
def listed_at(sample: Sample):
    """Add the list line that brought ``sample`` in to any data error raised about its files."""
    try:
        yield
    except DataError as exc:
        if not sample.origin:
            raise
        raise type(exc)(f"{exc} (from list line {sample.origin})") from None


def has_mask(sample: Sample) -> bool:
    """Unlabeled samples may have a mask on disk (hidden ground truth for diagnostics) or none."""
    return sample.mask is not None and sample.mask.is_file()


def read_label(path: Path, dataset: str, num_classes: int) -> np.ndarray:
    """A mask as train ids (Cityscapes label ids are mapped), with its values checked."""
    mask = registered_dataset(dataset).read_mask(path)
    check_label_values(mask, num_classes, str(path), LabelError)
    return mask


def _check_same_size(sample: Sample, image_size: tuple[int, int], mask_size: tuple[int, int]) -> None:
    if image_size != mask_size:
        raise SizeError(f"{sample.mask}: the mask is {mask_size[0]}x{mask_size[1]} pixels but its image "
                        f"{sample.image} is {image_size[0]}x{image_size[1]}; expected the same size (width x height)")


def load_sample(sample: Sample, cfg: DataConfig, with_mask: bool = True) -> tuple[Image.Image, np.ndarray | None]:
    """The RGB image and, when the sample has a mask on disk and ``with_mask`` asks for it, its checked label
    map (None otherwise). Each file is decoded once; the checks add only comparisons on arrays already in memory."""
    with listed_at(sample):
        image = open_whole(sample.image, ImageError, "image").convert("RGB")
        if not (with_mask and has_mask(sample)):
            return image, None
        mask = read_label(sample.mask, cfg.dataset, cfg.num_classes)
        _check_same_size(sample, image.size, mask.shape[::-1])
    return image, mask


def check_headers(sample: Sample) -> None:
    """The cheap check run over the training splits before training: both files open as images of one size."""
    with listed_at(sample):
        size = header_size(sample.image, ImageError, "image")
        if has_mask(sample):
            _check_same_size(sample, size, header_size(sample.mask, MaskError, "mask"))
