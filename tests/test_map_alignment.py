"""scripts/map_alignment.py: offsets and shifts on hand-made masks."""
import runpy
from pathlib import Path

import torch

ALIGN = runpy.run_path(str(Path(__file__).resolve().parents[1] / "scripts" / "map_alignment.py"))


def square(x0: int, y0: int, size: int = 4, shape=(16, 20)) -> torch.Tensor:
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[y0:y0 + size, x0:x0 + size] = True
    return mask


def test_offset_of_a_moved_square_is_the_move():
    assert ALIGN["offset"](square(7, 3), square(4, 5)) == (3.0, -2.0)


def test_centroid_weights_by_the_map():
    weight = torch.zeros(4, 6)
    weight[1, 2], weight[3, 5] = 3.0, 1.0
    assert ALIGN["centroid"](weight) == (2.75, 1.5)


def test_shifted_moves_without_wrapping():
    moved = ALIGN["shifted"](square(15, 0), 3, 2)
    assert moved.sum() == 2 * 4  # two columns fall off the right edge, nothing wraps to the left
    assert moved[2:6, 18:20].all() and not moved[:, :18].any()
    assert torch.equal(ALIGN["shifted"](square(6, 6), -2, -1), square(4, 5))
