import numpy as np
import torch
from PIL import Image

from reprokit.data.transforms import StrongAug, WeakAug, cutmix_box_masks, mix


def _pair(size=64):
    img = np.zeros((size, size, 3), np.uint8)
    img[:, : size // 2] = 255  # left half white
    mask = np.zeros((size, size), np.uint8)
    mask[:, : size // 2] = 1
    return Image.fromarray(img), mask


def test_weak_aug_keeps_image_and_mask_aligned_and_pads_with_ignore():
    img, mask = _pair()
    aug = WeakAug(crop_size=32, scale_range=(0.5, 1.0), flip=True)
    for seed in range(20):
        out_img, out_mask, valid = aug(img, mask, np.random.default_rng(seed))
        assert out_img.shape == (32, 32, 3) and out_mask.shape == (32, 32)
        assert (out_mask[~valid] == 255).all() and (out_img[~valid] == 0).all()
        white = out_img[..., 0] > 127
        assert ((out_mask == 1) == (white & valid))[valid].mean() > 0.95


def test_weak_aug_is_a_function_of_the_seed():
    img, mask = _pair()
    aug = WeakAug(crop_size=16, scale_range=(0.5, 2.0))
    a = aug(img, mask, np.random.default_rng(5))
    b = aug(img, mask, np.random.default_rng(5))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_strong_aug_changes_colours_only():
    x = torch.rand(3, 16, 16)
    y = StrongAug(jitter_p=1.0, blur_p=0.0, grayscale_p=0.0)(x, np.random.default_rng(0))
    assert y.shape == x.shape and not torch.equal(x, y) and 0 <= y.min() and y.max() <= 1


def test_cutmix_masks_area_and_mixing():
    g = torch.Generator().manual_seed(0)
    masks = cutmix_box_masks(64, 100, 100, n_boxes=3, area_range=(0.25, 0.5), generator=g)
    frac = masks.float().mean((1, 2))
    assert masks.dtype == torch.bool and masks.shape == (64, 100, 100)
    assert (frac > 0.05).all() and (frac <= 0.52).all() and frac.mean() > 0.2
    one = cutmix_box_masks(8, 50, 50, n_boxes=1, area_range=(0.25, 0.25), generator=g).float().mean((1, 2))
    assert torch.allclose(one, torch.full_like(one, 0.25), atol=0.04)
    a, b = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    m = torch.zeros(2, 4, 4, dtype=torch.bool)
    m[:, :2] = True
    out = mix(a, b, m)
    assert (out[:, :, :2] == 1).all() and (out[:, :, 2:] == 0).all()
