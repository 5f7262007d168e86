"""Errors about input data. Each message names the file at fault (and the split list line that brought it
in) and says what was expected, so a user fixes one file instead of debugging a stack trace.

``kind`` groups problems in the ``reprokit data check`` report.
"""
from __future__ import annotations


class DataError(ValueError):
    """Bad input data; the message names the file or directory at fault and what was expected."""

    kind = "bad data"


class DataRootError(DataError):
    """A data root that reprokit will not write into, because it holds files reprokit did not create."""

    kind = "data root"


class SplitError(DataError):
    """A split list is malformed; the message names the file and line."""

    kind = "list line"


class ImageError(DataError):
    """An image file that cannot be decoded whole (missing bytes, not an image)."""

    kind = "unreadable image"


class MaskError(DataError):
    """A mask file that cannot be read as class indices."""

    kind = "unreadable mask"


class LabelError(DataError):
    """A mask holding values that are neither a class id of ``data.num_classes`` nor 255 (ignore)."""

    kind = "label value out of range"


class SizeError(DataError):
    """A mask whose size differs from its image's (the labels would not line up with the pixels)."""

    kind = "mask size differs from image"


class WeakLabelError(DataError):
    """A weak label (point, scribble or click map, or an image-label list line) is missing or unreadable."""

    kind = "weak label"
