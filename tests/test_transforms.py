import numpy as np
import torch
from PIL import Image

from reprokit.data.transforms import StrongAug, WeakAug, cutmix_box_masks, mix, resize_sparse


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
        out_img, labels, valid = aug(img, {"mask": mask}, np.random.default_rng(seed))
        out_mask = labels["mask"]
        assert out_img.shape == (32, 32, 3) and out_mask.shape == (32, 32)
        assert (out_mask[~valid] == 255).all() and (out_img[~valid] == 0).all()
        white = out_img[..., 0] > 127
        assert ((out_mask == 1) == (white & valid))[valid].mean() > 0.95


def test_weak_aug_is_a_function_of_the_seed():
    img, mask = _pair()
    aug = WeakAug(crop_size=16, scale_range=(0.5, 2.0))
    (img_a, lab_a, valid_a), (img_b, lab_b, valid_b) = (aug(img, {"mask": mask}, np.random.default_rng(5))
                                                        for _ in range(2))
    assert np.array_equal(img_a, img_b) and np.array_equal(lab_a["mask"], lab_b["mask"])
    assert np.array_equal(valid_a, valid_b)


def _spaced_points(size=64, spacing=8, unlabeled=0):
    """Points on a grid ``spacing`` pixels apart (distinct pixels at any scale >= 1 / spacing), class 1 + i % 10."""
    sparse = np.full((size, size), unlabeled, np.uint8)
    coords = [(y, x) for y in range(3, size, spacing) for x in range(5, size, spacing)]
    for i, (y, x) in enumerate(coords):
        sparse[y, x] = 1 + i % 10
    return sparse, sorted(int(sparse[y, x]) for y, x in coords)


def test_resizing_a_sparse_map_keeps_every_point_where_nearest_neighbour_drops_them():
    sparse, classes = _spaced_points()
    for scale in (0.15, 0.3, 0.5, 0.77):  # shrinking: one pixel per point
        n = round(64 * scale)
        out = resize_sparse(sparse, (n, n), unlabeled=0)
        assert sorted(out[out != 0].tolist()) == classes, scale
    big = resize_sparse(sparse, (100, 100), unlabeled=0)  # enlarging: each point a block of its class
    centre = lambda v: int((v + 0.5) * 100 / 64)  # noqa: E731 - where a source pixel's centre lands
    assert [big[centre(3), centre(5)], big[centre(11), centre(5)]] == sparse[[3, 11], 5].tolist()
    assert set(np.unique(big)) == set(np.unique(sparse))
    nearest = np.asarray(Image.fromarray(sparse).resize((26, 26), Image.NEAREST))
    assert (nearest != 0).sum() < len(classes)  # what the coordinates are there for


def test_every_point_inside_the_crop_survives_the_weak_augmentation():
    sparse, classes = _spaced_points()
    image = Image.fromarray(np.zeros((64, 64, 3), np.uint8))
    whole = WeakAug(crop_size=40, scale_range=(0.2, 0.6), flip=True, sparse_unlabeled=0)  # the image fits the crop
    for seed in range(10):
        _, out, valid = whole(image, {"sparse": sparse}, np.random.default_rng(seed))
        labeled = out["sparse"][(out["sparse"] != 0) & (out["sparse"] != 255)]
        assert sorted(labeled.tolist()) == classes and (out["sparse"][~valid] == 255).all()
    index = np.zeros_like(sparse)
    index[sparse != 0] = np.arange(1, (sparse != 0).sum() + 1)  # each point's own id, to follow it
    points = np.argwhere(index != 0)
    for scale_range in ((0.3, 0.7), (1.2, 1.6)):  # shrinking (coordinates) and enlarging (nearest-neighbour)
        part = WeakAug(crop_size=20, scale_range=scale_range, flip=True, sparse=("sparse", "index"), sparse_unlabeled=0)
        for seed in range(10):
            _, out, _ = part(image, {"sparse": sparse, "index": index}, np.random.default_rng(seed))
            # the same draws as WeakAug's, to say where each point must be: scale, crop corner, flip
            rng = np.random.default_rng(seed)
            n = max(1, int(round(64 * float(rng.uniform(*scale_range)))))
            size = max(n, 20)
            top, left = int(rng.integers(0, size - 20 + 1)), int(rng.integers(0, size - 20 + 1))
            flipped = rng.random() < 0.5
            inside = 0
            for y, x in points:
                cy, cx = int((y + 0.5) * n / 64) - top, int((x + 0.5) * n / 64) - left
                if 0 <= cy < 20 and 0 <= cx < 20:
                    cx = 19 - cx if flipped else cx
                    inside += 1
                    assert out["index"][cy, cx] == index[y, x] and out["sparse"][cy, cx] == sparse[y, x]
            assert inside > 0
            if scale_range[1] < 1:  # one pixel per point: nothing else is labeled
                assert ((out["sparse"] != 0) & (out["sparse"] != 255)).sum() == inside


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


def test_ignored_pixels_of_a_sparse_label_survive_shrinking_as_enlarging():
    """255 in a label file is ignored (no loss, no GMM), not unlabeled: resizing keeps it either way, and a
    labeled pixel landing on the same target pixel wins over it."""
    sparse = np.full((8, 8), 4, np.uint8)  # C = 4: unlabeled
    sparse[2, 2], sparse[5, 6], sparse[3, 3] = 255, 1, 255
    for size in (4, 16):
        out = resize_sparse(sparse, (size, size), unlabeled=4)
        assert set(np.unique(out)) == {1, 4, 255}, size
    small = resize_sparse(sparse, (4, 4), unlabeled=4)
    assert small[1, 1] == 255 and small[2, 3] == 1
    sparse[2, 3] = 2  # lands on small[1, 1] with the ignored pixels
    assert resize_sparse(sparse, (4, 4), unlabeled=4)[1, 1] == 2
