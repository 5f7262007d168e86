"""Where a feature map's cells sit on the input's pixels, and resampling that respects it.

A convolutional trunk whose strided layers pad by half their kernel centres cell ``o`` of a stride-``s`` feature
over input pixel ``s * o``; a ViT's non-overlapping patches centre it over ``s * o + (s - 1) / 2``.
``F.interpolate(..., align_corners=False)`` assumes the second convention for every map, so it moves a
convolutional CAM by ``(s - 1) / 2`` pixels (3.5 at stride 8) towards the bottom right, and by more when the
input was rescaled first (the map of an input shrunk by 0.5 lands 7 pixels off). ``align_corners=True`` is no
fix either: it stretches the map to the image's last pixel (for 48 -> 6 it puts cell 5 at pixel 47, not 40).

:class:`CellGrid` states the convention, :func:`cells_to_pixels` resamples a map onto the pixels of an image of
any size (bilinear between the neighbouring cell centres, the border cells' values held beyond them), and
:func:`pixels_at_cells` samples a pixel map at the cell centres (what a loss on the feature map compares).
Both are exact separable linear maps, so they also run without host synchronisation on a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CellGrid:
    """Cell ``o`` of a map of stride ``stride`` is centred over input pixel ``stride * o + offset``."""

    stride: int
    offset: float = 0.0

    @classmethod
    def patches(cls, size: int) -> "CellGrid":
        """Non-overlapping ``size`` x ``size`` patches (a ViT): each cell at its patch's centre."""
        return cls(size, (size - 1) / 2)

    def within(self, finer: "CellGrid") -> "CellGrid":
        """This grid in units of the cells of a ``finer`` grid on the same input (where a decoder fuses a
        coarse feature into a fine one)."""
        return CellGrid(self.stride // finer.stride, (self.offset - finer.offset) / finer.stride)


def _interpolation(coords: torch.Tensor, n: int) -> torch.Tensor:
    """[len(coords), n] matrix of linear interpolation weights at fractional indices ``coords`` into ``n``
    samples, clamped to the first and last sample: the tent of each sample evaluated at each coordinate."""
    u = coords.clamp(0, n - 1)
    return (1 - (u[:, None] - torch.arange(n, device=u.device, dtype=u.dtype)).abs()).clamp(min=0)


def _separable(a: torch.Tensor, maps: torch.Tensor, b: torch.Tensor, equation: str) -> torch.Tensor:
    """``einsum`` of the row and column weights with the maps in float32, autocast or not (a lower precision
    here would round logits that a temperature of 0.01 later magnifies)."""
    with torch.autocast(maps.device.type, enabled=False):
        return torch.einsum(equation, a.float(), maps.float(), b.float())


def _pixel_of_cell(grid: CellGrid, cells: int, input_px: int, out_px: int, device) -> torch.Tensor:
    """Each cell's centre in the pixel coordinates of the output image: the map was computed on an input of
    ``input_px`` pixels that is the output image resized (pixel areas aligned, as ``align_corners=False``)."""
    centre = grid.stride * torch.arange(cells, device=device, dtype=torch.float64) + grid.offset
    return (centre + 0.5) * (out_px / input_px) - 0.5


def cells_to_pixels(maps: torch.Tensor, size, grid: CellGrid, input_size=None) -> torch.Tensor:
    """Maps [B, C, h, w] of a network run on an input of ``input_size`` (default ``size``) resampled onto an image
    of ``size`` = (H, W) pixels: each pixel takes the bilinear blend of the cells whose centres surround it.
    Computed in float32 (float64 weights)."""
    (h, w), (height, width) = maps.shape[-2:], tuple(size)
    in_h, in_w = tuple(input_size) if input_size is not None else (height, width)
    rows = _cell_coordinates(grid, h, in_h, height, maps.device)
    cols = _cell_coordinates(grid, w, in_w, width, maps.device)
    return _separable(_interpolation(rows, h), maps, _interpolation(cols, w), "Yh,bchw,Xw->bcYX")


def _cell_coordinates(grid: CellGrid, cells: int, input_px: int, out_px: int, device) -> torch.Tensor:
    """Fractional cell index of every output pixel (the inverse of :func:`_pixel_of_cell`)."""
    pixel = torch.arange(out_px, device=device, dtype=torch.float64)
    return ((pixel + 0.5) * (input_px / out_px) - 0.5 - grid.offset) / grid.stride


def pixels_at_cells(pixel_maps: torch.Tensor, cells, grid: CellGrid) -> torch.Tensor:
    """Pixel maps [B, C, H, W] sampled (bilinearly) at the centres of a ``cells`` = (h, w) feature map computed on
    them: what a loss on that feature map should compare each cell with. Computed in float32."""
    (height, width), (h, w) = pixel_maps.shape[-2:], tuple(cells)
    a = _interpolation(_pixel_of_cell(grid, h, height, height, pixel_maps.device), height)
    b = _interpolation(_pixel_of_cell(grid, w, width, width, pixel_maps.device), width)
    return _separable(a, pixel_maps, b, "hY,bcYX,wX->bchw")


def labels_at_cells(labels: torch.Tensor, cells, grid: CellGrid) -> torch.Tensor:
    """A label map [B, H, W] read at the pixel nearest each cell centre of a ``cells`` = (h, w) feature map
    computed on it (labels are not blended)."""
    (height, width), (h, w) = labels.shape[-2:], tuple(cells)
    rows = _pixel_of_cell(grid, h, height, height, labels.device).round().long().clamp(0, height - 1)
    cols = _pixel_of_cell(grid, w, width, width, labels.device).round().long().clamp(0, width - 1)
    return labels[:, rows][:, :, cols]
