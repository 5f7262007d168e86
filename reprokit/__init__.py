"""reprokit: reproducible semi-supervised semantic segmentation (STPG and related methods)."""

__version__ = "0.1.0"
