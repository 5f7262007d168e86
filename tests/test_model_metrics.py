import pytest
import torch
import torchvision

from reprokit import metrics
from reprokit.config import ModelConfig
from reprokit.models.deeplab import CheckpointKeyError, build_network

SMALL = dict(aspp_channels=16, decoder_channels=16, low_level_channels=8, aspp_rates=[1, 2, 3])


@pytest.mark.parametrize("os_", [16, 8])
def test_deeplab_shapes_and_output_stride(os_):
    net = build_network(ModelConfig(backbone="resnet18", output_stride=os_, proj_dim=12, **SMALL), 5).eval()
    x = torch.randn(2, 3, 64, 64)
    out = net(x, return_features=True)
    assert out["logits"].shape == (2, 5, 64, 64)
    assert out["features"].shape == (2, 16, 16, 16)  # decoder at 1/4 resolution
    assert out["proj"].shape == (2, 12, 16, 16)
    _, high = net.backbone(x)
    assert high.shape[-1] == 64 // os_


def test_resnet50_is_dilated_to_os16():
    net = build_network(ModelConfig(backbone="resnet50", **SMALL), 3).eval()
    low, high = net.backbone(torch.randn(1, 3, 64, 64))
    assert low.shape[1:] == (256, 16, 16) and high.shape[1:] == (2048, 4, 4)


def test_pretrained_from_disk_and_key_mismatch(tmp_path):
    ref = torchvision.models.resnet18()
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    net = build_network(ModelConfig(backbone="resnet18", pretrained=str(tmp_path / "r18.pth"), **SMALL), 3)
    assert torch.equal(net.backbone.layer1[0].conv1.weight, ref.layer1[0].conv1.weight)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointKeyError, match=r"bad.pth does not match the backbone"):
        build_network(ModelConfig(backbone="resnet18", pretrained=str(tmp_path / "bad.pth"), **SMALL), 3)
    with pytest.raises(CheckpointKeyError, match="file not found"):
        build_network(ModelConfig(backbone="resnet18", pretrained=str(tmp_path / "none.pth"), **SMALL), 3)


def test_confusion_matrix_rows_are_ground_truth():
    target = torch.tensor([0, 0, 1, 1, 2, 255])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    cm = metrics.confusion_matrix(pred, target, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]] and cm.dtype == torch.long


def test_iou_and_miou_by_hand():
    cm = torch.tensor([[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    iou = metrics.iou(cm)
    # class 0: tp 1, fp 1, fn 1 -> 1/3; class 1: tp 2, fp 1 -> 2/3; class 2: tp 0, fn 1 -> 0
    assert torch.allclose(iou, torch.tensor([1 / 3, 2 / 3, 0.0]))
    assert metrics.mean_iou(cm) == pytest.approx(1 / 3)
    absent = metrics.iou(torch.tensor([[3, 0], [0, 0]]))
    assert absent[0] == 1 and torch.isnan(absent[1])
