"""Opening image files strictly: the whole picture or an error naming the file, never a partial image.

PIL fills the missing part of a truncated file with grey when ``ImageFile.LOAD_TRUNCATED_IMAGES`` is set
(some libraries set it globally); a network would then train on made-up pixels and labels. Decoding here
always runs with it off, and restores the caller's setting afterwards.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from PIL import Image, ImageFile

from reprokit.data.errors import DataError

# what PIL raises for a file it cannot decode: not an image, missing bytes, broken chunks or streams
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


@contextmanager
def _no_partial_images():
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


def open_whole(path: Path, error: type[DataError], what: str) -> Image.Image:
    """``path`` fully decoded, or ``error`` naming the file (``what``: 'image' or 'mask')."""
    try:
        with _no_partial_images():
            img = Image.open(path)
            img.load()
    except DECODE_ERRORS as exc:
        raise error(f"{path}: cannot decode the {what} ({exc}); expected a complete image file") from None
    return img


def header_size(path: Path, error: type[DataError], what: str) -> tuple[int, int]:
    """(width, height) from the file's header alone: cheap enough to run over a whole split before training."""
    try:
        with Image.open(path) as img:
            return img.size
    except DECODE_ERRORS as exc:
        raise error(f"{path}: cannot read the {what}'s header ({exc}); expected an image file") from None
