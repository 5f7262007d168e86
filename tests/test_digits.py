import hashlib
import json

import numpy as np

from reprokit.data.digits import build_digit_scenes, class_profile
from reprokit.data.voc import read_mask
from tests.conftest import TINY_SPEC


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "meta.json":
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_voc_layout_and_labels(digits_root):
    ids = (digits_root / "ImageSets/Segmentation/train.txt").read_text().split()
    assert len(ids) == TINY_SPEC.n_train
    mask = read_mask(digits_root / "SegmentationClass" / f"{ids[0]}.png")
    assert mask.dtype == np.uint8 and mask.shape == (TINY_SPEC.size, TINY_SPEC.size)
    values = set(np.unique(np.concatenate([read_mask(p).ravel() for p in (digits_root / "SegmentationClass").glob("*.png")])))
    assert values <= set(range(11)) | {255} and 0 in values and 255 in values


def test_ignore_band_separates_classes(digits_root):
    # every pixel next to a different (non-ignore) class must itself be ignore: no direct 0|digit contact
    for p in sorted((digits_root / "SegmentationClass").glob("*.png"))[:20]:
        m = read_mask(p).astype(int)
        a, b = m[:, :-1], m[:, 1:]
        direct = (a != b) & (a != 255) & (b != 255)
        assert not direct.any()


def test_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    build_digit_scenes(a, TINY_SPEC)
    build_digit_scenes(b, TINY_SPEC)
    assert _digest(a) == _digest(b)


def test_long_tail_and_disjoint_sources(digits_root):
    p = class_profile(20.0)
    assert abs(p[0] / p[9] - 20.0) < 1e-9 and abs(p.sum() - 1) < 1e-12
    meta = json.loads((digits_root / "meta.json").read_text())
    assert meta["source_digits_disjoint"] is True


def test_default_profile_is_long_tailed(tmp_path):
    from reprokit.data.digits import DigitScenesSpec

    meta = build_digit_scenes(tmp_path / "d", DigitScenesSpec(n_train=400, n_val=10, size=32, min_scale=10, max_scale=16))
    inst = meta["splits"]["train"]["instances_per_class"][1:]
    assert max(inst) >= 10 * min(inst)
