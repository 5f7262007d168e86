"""CAMs and CoSA's maps in the right place: a cell's evidence lands on the pixel the cell is centred over, after
every resampling the image-label methods do (dense CAMs, each scale and flip of the assignment network, the
SPL the CAM loss compares with), and the centre the grids state is the network's receptive-field centre."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reprokit.config import ConfigError
from reprokit.methods import build_method
from reprokit.methods.cam import ResNetStages, dense_cams
from reprokit.methods.cosa import assignment_maps, spl_cam_loss
from reprokit.models.cells import CellGrid, cells_to_pixels, labels_at_cells, pixels_at_cells


def hot_cell(size, o):
    cams = torch.zeros(1, 1, size, size)
    cams[0, 0, o[0], o[1]] = 1.0
    return cams


def peak(maps):
    """(row, col) of the maximum of a [1, 1, H, W] map."""
    flat = int(maps[0, 0].flatten().argmax())
    return divmod(flat, maps.shape[-1])


def centroid(maps):
    """Mass centre (row, col) of a non-negative [H, W] map."""
    m = maps.double() / maps.sum()
    rows, cols = torch.arange(m.shape[0], dtype=torch.float64), torch.arange(m.shape[1], dtype=torch.float64)
    return float((m.sum(1) * rows).sum()), float((m.sum(0) * cols).sum())


def test_a_hot_cell_lands_on_pixel_8o_after_dense_cams():
    for o in [(0, 0), (2, 3), (5, 5)]:
        assert peak(dense_cams(hot_cell(6, o), (48, 48), CellGrid(8))) == (8 * o[0], 8 * o[1])


def test_the_old_resampling_put_it_3_5_pixels_off():
    """The defect the grid removes: align_corners=False centres cell o over 8o + 3.5."""
    up = F.interpolate(hot_cell(6, (2, 2)), size=(48, 48), mode="bilinear", align_corners=False)[0, 0]
    assert centroid(up.clamp(min=0)) == pytest.approx((19.5, 19.5), abs=0.3)


def test_patch_grids_resample_as_align_corners_false():
    """The ViT path was right and stays so: patch centres are where align_corners=False puts them."""
    maps = torch.randn(2, 3, 4, 5)
    want = F.interpolate(maps, size=(64, 80), mode="bilinear", align_corners=False)
    assert torch.allclose(cells_to_pixels(maps, (64, 80), CellGrid.patches(16)), want, atol=1e-5)


@pytest.mark.parametrize("model", [{"output_stride": 8}, {"output_stride": 16}, {"output_stride": 8, "stem_maxpool": False}],
                         ids=["os8", "os16", "os8-no-maxpool"])
def test_the_resnet_grid_is_its_receptive_field_centre(tiny_cfg, model):
    """The gradient magnitude of a central cell of each stage with respect to the input, averaged over random
    networks and inputs, is centred over the pixel the stage's grid names: the strided layers and the max-pool
    pad by half their windows, so a cell's receptive field is symmetric about it. The resampling that was
    replaced assumed it 3.5 pixels further at stride 8."""
    cfg = tiny_cfg(model={"pretrained": None, **model})
    torch.manual_seed(0)
    nets = [ResNetStages(cfg.model).eval() for _ in range(8)]
    g = torch.Generator().manual_seed(1)
    for index, name in enumerate(("low", "mid", "high")):
        grid, total = nets[0].grids[name], 0
        o = 80 // grid.stride
        for stages in nets:
            x = torch.randn(1, 3, 160, 160, generator=g, requires_grad=True)
            stages(x)[index][0, :, o, o].pow(2).sum().backward()
            total = total + x.grad[0].abs().sum(0)
        expected = grid.stride * o + grid.offset
        assert centroid(total) == pytest.approx((expected, expected), abs=1.0), name


class HotCell(nn.Module):
    """A stand-in for CoSA's network: every view's CAMs (and auxiliary CAMs) are 1 at one cell, ``cell``, and 0
    elsewhere; its segmentation logits likewise at the matching stride-4 cell."""

    grids = {"seg": CellGrid(4), "cam": CellGrid(8), "cam_aux": CellGrid(8)}

    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def forward(self, x, heads=True):
        def hot(stride, scale):
            maps = x.new_zeros(len(x), 2, -(-x.shape[-2] // stride), -(-x.shape[-1] // stride))
            maps[:, :, self.cell[0] * scale, self.cell[1] * scale] = 1.0
            return maps
        return {"seg": hot(4, 2), "cam": hot(8, 1), "cam_aux": hot(8, 1), "cls": x.new_zeros(len(x), 2)}


def tent(size, scale, stride, o):
    """[size, size] bilinear tent of a hot cell ``o`` of a stride-``stride`` map computed on the image rescaled by
    ``scale``: image pixel p sits at (p + 0.5) * scale - 0.5 of the rescaled input (pixel areas aligned), which
    is cell coordinate that over ``stride``, and the tent falls linearly to 0 one cell away."""
    u = ((torch.arange(size, dtype=torch.float64) + 0.5) * scale - 0.5) / stride
    rows, cols = ((1 - (u - c).abs()).clamp(min=0) for c in o)
    return (rows[:, None] * cols[None, :]).float()


@pytest.mark.parametrize("scale,cell", [(1.0, (2, 3)), (0.5, (1, 1)), (1.5, (2, 3))])
def test_assignment_maps_put_a_hot_cell_on_its_centre_at_every_scale_and_flip(scale, cell):
    """Cell o of the view rescaled by s is centred over its pixel 8o, which is pixel (8o + 0.5) / s - 0.5 of the
    image: every map of the assignment network is the tent around that pixel (normalised to a peak of 1 for
    the CAMs), and with flips the mirrored view's tent is the mirror of it (max for CAMs, sum for logits)."""
    x = torch.zeros(1, 3, 48, 48)
    plain = assignment_maps(HotCell(cell), x, [scale], flip=False)
    flipped = assignment_maps(HotCell(cell), x, [scale], flip=True)
    cam = tent(48, scale, 8, cell)
    seg = tent(48, scale, 4, [2 * o for o in cell])
    for key in ("cams", "cams_aux"):
        assert torch.allclose(plain[key][0, 0], cam / cam.amax(), atol=1e-5), key
        mirrored = torch.maximum(cam, cam.flip(-1))
        assert torch.allclose(flipped[key][0, 0], mirrored / mirrored.amax(), atol=1e-5), key
    assert torch.allclose(plain["seg"][0, 0], seg, atol=1e-5)
    assert torch.allclose(flipped["seg"][0, 0], seg + seg.flip(-1), atol=1e-5)


def test_spl_cam_loss_samples_the_spl_at_the_cell_centres():
    spl = torch.zeros(1, 2, 48, 48)
    spl[0, 0] = 1.0
    spl[0, 1, 16, 24], spl[0, 0, 16, 24] = 1.0, 0.0  # one foreground pixel, at the centre of cell (2, 3)
    target = pixels_at_cells(spl[:, 1:], (6, 6), CellGrid(8))
    assert target[0, 0, 2, 3] == 1.0 and target.sum() == 1.0
    cams = torch.randn(1, 1, 6, 6)
    want = F.binary_cross_entropy_with_logits(F.relu(cams), target)
    assert torch.allclose(spl_cam_loss(cams, spl, CellGrid(8)), want)


def test_the_assignment_network_sees_no_mirrored_view_where_the_data_set_forbids_flips(tiny_cfg):
    cfg = tiny_cfg(method={"name": "cosa"}, data={"flip": False, "label_kind": "image"})
    assert build_method(cfg, cfg.data.num_classes).flip_views is False
    cfg = tiny_cfg(method={"name": "cosa"}, data={"flip": True, "label_kind": "image"})
    assert build_method(cfg, cfg.data.num_classes).flip_views is True
    with pytest.raises(ConfigError, match="method.pseudo_flip"):
        cfg = tiny_cfg(method={"name": "cosa", "pseudo_flip": True}, data={"flip": False, "label_kind": "image"})
        build_method(cfg, cfg.data.num_classes)


def test_a_schedule_relative_horizon_sets_the_momentum(tiny_cfg):
    cfg = tiny_cfg(method={"name": "cosa", "ema_horizon": 0.05}, data={"label_kind": "image"})
    method = build_method(cfg, cfg.data.num_classes)
    method.set_total_steps(4000)
    assert [m for _, _, m in method.ema_pairs()] == [pytest.approx(1 - 1 / 200)]
    method.set_total_steps(32000)  # the code's schedule: 0.9994 is a horizon of 0.052
    assert [m for _, _, m in method.ema_pairs()] == [pytest.approx(1 - 1 / 1600)]


def test_labels_are_read_at_the_cell_centres():
    labels = torch.arange(48 * 48).view(1, 48, 48)
    at = labels_at_cells(labels, (6, 6), CellGrid(8))
    assert at[0, 2, 3].item() == 16 * 48 + 24  # ResNet cell (2, 3): pixel (16, 24)
    at = labels_at_cells(labels, (3, 3), CellGrid.patches(16))
    assert at[0, 1, 2].item() == 24 * 48 + 40  # patch (1, 2): centre (23.5, 39.5), rounded half to even


def test_resampling_stays_float32_under_autocast():
    maps = torch.randn(1, 2, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dense = cells_to_pixels(maps, (48, 48), CellGrid(8))
        sampled = pixels_at_cells(dense, (6, 6), CellGrid(8))
    assert dense.dtype == sampled.dtype == torch.float32
    assert torch.allclose(sampled, maps, atol=1e-5)  # a cell's centre pixel holds the cell's value
