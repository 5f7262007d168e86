"""The dense-CRF energy loss (reprokit.methods.crf_energy) and its place in CoSA's step."""
import pytest
import torch

from reprokit.data.transforms import normalize
from reprokit.methods.crf_energy import bilateral_filter, colours, dense_crf_energy_loss

RED, BLUE = (200.0, 30.0, 30.0), (30.0, 30.0, 200.0)
CODE = dict(weight=1e-7, sigma_rgb=15.0, sigma_xy=100.0, scale=0.5, reference_crop=448)


def two_regions(size=24, edge=12):
    """[1, 3, size, size] image, red left of column ``edge`` and blue from it."""
    image = torch.tensor(BLUE).view(1, 3, 1, 1).repeat(1, 1, size, size)
    image[..., :edge] = torch.tensor(RED).view(1, 3, 1, 1)
    return image


def split_at(column, size=24, sharpness=0.9):
    """Two-class probabilities: class 0 left of ``column``, class 1 from it, each with ``sharpness``."""
    probs = torch.full((1, 2, size, size), 1 - sharpness)
    probs[0, 0, :, :column] = sharpness
    probs[0, 1, :, column:] = sharpness
    return probs


def loss(probs, image, undecided=None, **kw):
    b, _, h, w = probs.shape
    valid = torch.ones(b, h, w, dtype=torch.bool)
    undecided = torch.zeros(b, h, w, dtype=torch.bool) if undecided is None else undecided
    return dense_crf_energy_loss(probs, image, valid, undecided, **{**CODE, **kw})


def test_colours_undo_the_data_normalisation_into_the_codes_0_255_units():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    image = two_regions()
    assert torch.allclose(colours(normalize(image / 255.0, mean, std), mean, std), image, atol=1e-3)


def test_the_filter_is_the_bilateral_affinity_matrix_times_the_maps():
    g = torch.Generator().manual_seed(0)
    image, maps = 255 * torch.rand(2, 3, 4, 5, generator=g), torch.rand(2, 3, 4, 5, generator=g)
    sigma_rgb, sigma_xy = 40.0, 2.0
    for n in range(2):
        pos = torch.tensor([(r, c) for r in range(4) for c in range(5)], dtype=torch.float32)
        colour = image[n].flatten(1).T
        w = torch.exp(-torch.cdist(pos, pos) ** 2 / (2 * sigma_xy ** 2)
                      - torch.cdist(colour, colour) ** 2 / (2 * sigma_rgb ** 2))
        want = (w @ maps[n].flatten(1).T).T.reshape(3, 4, 5)
        assert torch.allclose(bilateral_filter(image, maps, sigma_rgb, sigma_xy)[n], want, rtol=1e-4, atol=1e-4)


def test_the_energy_prefers_the_boundary_on_the_colour_edge():
    image = two_regions()
    on_edge = loss(split_at(12), image)
    for column in (8, 10, 14, 16):
        assert on_edge < loss(split_at(column), image), column


def test_confident_pixels_are_gated_out_and_undecided_ones_kept():
    image, certain = two_regions(), split_at(12, sharpness=1.0)
    assert loss(certain, image).item() == 0.0  # 1 - max prob = 0 everywhere
    undecided = torch.zeros(1, 24, 24, dtype=torch.bool)
    undecided[0, :, 10:14] = True  # the CPL's band around the edge
    assert loss(certain, image, undecided).item() < 0


def test_the_gradient_is_the_released_codes():
    """d loss / d S = -2 g (W S) / N on the downscaled probabilities (scale 1 here to compare directly)."""
    g = torch.Generator().manual_seed(1)
    image = 255 * torch.rand(2, 3, 6, 6, generator=g)
    probs = torch.rand(2, 3, 6, 6, generator=g).softmax(1).requires_grad_(True)
    kw = dict(weight=1.0, sigma_rgb=50.0, sigma_xy=3.0, scale=1.0, reference_crop=6)
    value = loss(probs, image, **kw)
    value.backward()
    with torch.no_grad():
        gate = 1 - probs.max(1).values
        ws = bilateral_filter(image, probs, 50.0, 3.0)
        assert value.item() == pytest.approx(-(probs * ws * gate[:, None]).sum().item() / 2, rel=1e-5)
        assert torch.allclose(probs.grad, -2 * gate[:, None] * ws / 2, rtol=1e-4, atol=1e-6)


def test_the_codes_numbers_hold_at_its_crop_and_scale_with_the_image():
    """At the reference crop the weight and sigma are the code's; a scene enlarged by 2 (each pixel a 2 x 2
    block) costs about what the original costs when the numbers are for a crop of the same relative size."""
    small, big = two_regions(24, 12), two_regions(48, 24)
    p_small, p_big = split_at(10, 24), split_at(20, 48)
    at_small = loss(p_small, small, reference_crop=24, sigma_xy=6.0, scale=1.0)
    at_big = loss(p_big, big, reference_crop=24, sigma_xy=6.0, scale=1.0)
    assert at_big.item() == pytest.approx(at_small.item(), rel=0.1)
    direct = dense_crf_energy_loss(p_small, small, torch.ones(1, 24, 24, dtype=torch.bool),
                                   torch.zeros(1, 24, 24, dtype=torch.bool), weight=1.0, sigma_rgb=15.0,
                                   sigma_xy=6.0, scale=1.0, reference_crop=24)
    assert at_small.item() == pytest.approx(1e-7 * direct.item())


def test_no_affinity_is_kept_for_the_backward_pass():
    """The affinities are constants of the step: what autograd saves is a few maps, not the P x P matrix."""
    g = torch.Generator().manual_seed(2)
    image = 255 * torch.rand(2, 3, 32, 32, generator=g)
    logits = torch.randn(2, 3, 32, 32, generator=g, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        value = loss(logits.softmax(1), image, scale=1.0, reference_crop=32)
    value.backward()
    pixels = 32 * 32
    assert logits.grad.abs().sum() > 0 and sum(saved) < 2 * pixels * pixels / 10
