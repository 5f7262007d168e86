"""The gain of CoSA's released bilateral filter (a permutohedral lattice) against the exact Gaussian sum that
reprokit.methods.crf_energy computes, at the code's settings: a 448 crop downscaled by 0.5 (224 x 224),
sigma_rgb 15, sigma_xy 100 x 0.5. CoSA's ``crf_energy_weight`` is the code's weight times this gain.

The lattice is the authors' C++ (youshyee/CoSA, utils/bilateralfilter), not part of reprokit. Build it as a
plain shared library with one C entry point, e.g. in a folder holding their four sources::

    cat > wrap.cpp <<'EOF'
    #include "bilateralfilter.hpp"
    extern "C" void bf_batch(float* im, float* in, float* out, int n, int k, int h, int w, float sr, float sxy)
    { bilateralfilter_batch(im, n*3*h*w, in, n*k*h*w, out, n*k*h*w, n, k, h, w, sr, sxy); }
    EOF
    g++ -O2 -fopenmp -shared -fPIC -o liblattice.so wrap.cpp bilateralfilter.cpp permutohedral.cpp

then ``python scripts/crf_lattice_gain.py path/to/liblattice.so --images 3`` prints, per digit scene resized to
224 x 224 with a soft labelling of its mask, the energy ratio lattice / exact and the median per-pixel ratio.
"""
from __future__ import annotations

import argparse
import ctypes
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from reprokit.methods.crf_energy import bilateral_filter

SIDE, SIGMA_RGB, SIGMA_XY = 224, 15.0, 50.0  # the code's 448 crop at scale 0.5


def lattice_filter(library: ctypes.CDLL, image: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """The authors' filter of ``maps`` [N, K, H, W] with the affinity of ``image`` [N, 3, H, W] (0-255)."""
    n, k, h, w = maps.shape
    im, inp = (np.ascontiguousarray(t.numpy(), dtype=np.float32) for t in (image, maps))
    out = np.zeros_like(inp)
    pointer = ctypes.POINTER(ctypes.c_float)
    library.bf_batch(*(a.ctypes.data_as(pointer) for a in (im, inp, out)), n, k, h, w, SIGMA_RGB, SIGMA_XY)
    return torch.from_numpy(out)


def scene(image_path: Path, mask_path: Path, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A digit scene resized to SIDE x SIDE and a soft labelling of its mask (0.8 on the true class)."""
    image = torch.from_numpy(np.array(Image.open(image_path).convert("RGB"))).permute(2, 0, 1)[None].float()
    image = F.interpolate(image, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    mask = torch.from_numpy(np.array(Image.open(mask_path), dtype=np.int64))[None, None].float()
    mask = F.interpolate(mask, size=(SIDE, SIDE), mode="nearest")[0, 0].long().clamp(max=classes - 1)
    return image, F.one_hot(mask, classes).permute(2, 0, 1)[None].float() * 0.8 + 0.2 / classes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("library", help="the authors' filter built as a shared library with bf_batch")
    parser.add_argument("--root", default="data/digits", help="a digit-scenes build")
    parser.add_argument("--images", type=int, default=3)
    args = parser.parse_args(argv)
    library = ctypes.CDLL(str(Path(args.library).resolve()))
    library.bf_batch.argtypes = [ctypes.POINTER(ctypes.c_float)] * 3 + [ctypes.c_int] * 4 + [ctypes.c_float] * 2
    root = Path(args.root)
    for image_path in sorted((root / "JPEGImages").glob("*.jpg"))[:args.images]:
        image, soft = scene(image_path, root / "SegmentationClass" / f"{image_path.stem}.png", 11)
        exact = bilateral_filter(image, soft, SIGMA_RGB, SIGMA_XY)
        approx = lattice_filter(library, image, soft)
        print(f"{image_path.name}: energy ratio {float((soft * approx).sum() / (soft * exact).sum()):.3f}, "
              f"median per-pixel ratio {float((approx / exact).median()):.3f}")


if __name__ == "__main__":
    main()
