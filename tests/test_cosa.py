"""CoSA and the CAM baseline: their formulas on hand-computed tensors, the threshold search and its resume, one
training step of each method on a hand-built image-label batch, and the CAM baseline's evaluated network."""
import copy
import math

import pytest
import torch
import torchvision

from reprokit.config import ConfigError
from reprokit.methods import build_method
from reprokit.methods.cam import ViTStages, dense_cams
from reprokit.methods.cosa import (ThresholdSearch, balanced_seg_loss, cam_pseudo_labels, contrastive_separation,
                                   gmm_thresholds, reliability_weights, segmentation_pseudo_labels, spl_cam_loss)
from reprokit.models.cells import CellGrid
from tests.conftest import categories

C = 11  # digit scenes: background + 10 digits


def test_cam_pseudo_labels_thresholds_band_and_absent_classes():
    cams = torch.tensor([[[[0.9, 0.6, 0.7], [0.25, 0.26, 0.0], [0.3, 0.1, 0.8]],  # channel 0 = class 1
                          [[0.2, 0.5, 0.1], [0.1, 0.0, 0.0], [0.75, 0.2, 0.1]],  # channel 1 = class 2
                          [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]]])  # channel 2: absent, highest
    present = torch.tensor([[True, True, False]])
    assert cam_pseudo_labels(cams, present).tolist() == [[[1, 255, 255],  # 0.7 is not > high: band
                                                          [0, 255, 0],  # 0.25 <= low: background
                                                          [2, 0, 1]]]
    assert cam_pseudo_labels(cams, present, high=0.5, low=0.5).tolist() == [[[1, 1, 1], [0, 0, 0], [2, 0, 1]]]
    assert cam_pseudo_labels(cams, torch.zeros(1, 3, dtype=torch.bool)).eq(0).all()  # no class: background


def test_segmentation_pseudo_labels_suppress_absent_classes_and_supervise_cams():
    seg = torch.tensor([0.0, 0.01, 0.05]).view(1, 3, 1, 1)  # class 2 has the top logit but is absent
    spl = segmentation_pseudo_labels(seg, torch.tensor([[True, False]]), temperature=0.01)
    t = math.e / (1 + math.e)  # softmax([0, 1]) over background and class 1
    assert spl.flatten().tolist() == pytest.approx([1 - t, t, 0.0])
    cams = torch.tensor([2.0, -1.0]).view(1, 2, 1, 1)  # ReLU -> [2, 0]
    softplus = math.log1p(math.exp(2.0))
    expected = ((softplus - 2.0 * t) + math.log(2)) / 2  # BCE-with-logits per class, mean over classes
    assert spl_cam_loss(cams, spl, CellGrid(8)).item() == pytest.approx(expected)


def test_balanced_seg_loss_halves_background_and_foreground():
    logits = torch.zeros(1, 3, 1, 4)
    logits[0, 1, 0, 1] = math.log(2)  # pixel 1: p(class 1) = 2 / 4
    target = torch.tensor([[[0, 1, 255, 2]]])
    l2, l3 = math.log(2), math.log(3)
    assert balanced_seg_loss(logits, target).item() == pytest.approx(0.5 * l3 + 0.5 * (l2 + l3) / 2)
    weight = torch.tensor([[[0.5, 1.0, 9.0, 0.2]]])
    assert balanced_seg_loss(logits, target, weight).item() == pytest.approx(0.5 * 0.5 * l3 + 0.5 * (l2 + 0.2 * l3) / 2)
    only_bg = torch.tensor([[[0, 255, 255, 255]]])  # an empty part contributes 0
    assert balanced_seg_loss(logits, only_bg, fg_share=0.3).item() == pytest.approx(0.7 * l3)


def test_reliability_weights_are_inverse_perplexity():
    cams = torch.tensor([0.5, 1.0, 0.0]).view(1, 1, 1, 3).expand(1, 2, 1, 3).clone()
    cams[0, 1] = 1.0  # second class absent from the image: ignored
    present = torch.tensor([[True, False]])
    assert reliability_weights(cams, present).flatten().tolist() == pytest.approx([0.5, 1.0, 1.0])  # PPL 2, 1, 1
    assert reliability_weights(cams, present, beta=2.0)[0, 0, 0].item() == pytest.approx(0.25)


def test_contrastive_separation_by_hand():
    feature = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).T.reshape(1, 2, 1, 2)  # position 0: e1, position 1: e2
    labels = torch.tensor([[[0, 1]]])
    # prototypes e1 (background) and e2 (class 1): each position CE = log(1 + e^(-1 / T))
    assert contrastive_separation(feature, labels, 3, temperature=1.0).item() == pytest.approx(math.log1p(math.exp(-1)))
    assert contrastive_separation(feature, torch.tensor([[[0, 0]]]), 3).item() == 0  # no foreground: unused
    assert contrastive_separation(feature, torch.tensor([[[0, 255]]]), 3).item() == 0


def clusters(g: torch.Generator, n: int = 60) -> torch.Tensor:
    return torch.cat([c + 0.02 * torch.randn(n, generator=g) for c in (0.15, 0.5, 0.85)])


def test_gmm_threshold_search_finds_cluster_edges():
    v = clusters(torch.Generator().manual_seed(0))
    low, high = gmm_thresholds(torch.cat([v, torch.full((20,), 0.01)]))  # values <= 0.05 are left out
    assert low.item() == v[:60].max().item() and high.item() == v[120:].min().item()
    assert gmm_thresholds(torch.tensor([0.01, 0.5])) is None


def test_threshold_search_state_survives_state_dict():
    g = torch.Generator().manual_seed(1)
    batches = [clusters(g, 12).view(4, 1, 3, 3) for _ in range(3)]  # 4 images of 3 x 3 max-CAM maps
    present = torch.ones(4, 1, dtype=torch.bool)
    search = ThresholdSearch(images=6, side=3, low=0.25, high=0.7, momentum=0.5)
    search.update(batches[0], present)
    search.update(batches[1], present)  # 8 images into a queue of 6: it has wrapped
    assert int(search.count) == 8 and search.low < 0.25 and search.high > 0.7  # towards ~0.2 and ~0.8
    fresh = ThresholdSearch(images=6, side=3, low=0.25, high=0.7, momentum=0.5)
    fresh.load_state_dict(search.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(search.update(batches[2], present), fresh.update(batches[2], present)))
    assert torch.equal(search.queue, fresh.queue)


def image_batch(seed: int = 0, b: int = 2, size: int = 32) -> dict:
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(b, C, dtype=torch.bool)
    labels[:, 0], labels[0, 3], labels[1, 5], labels[1, 7] = True, True, True, True
    valid = torch.ones(b, size, size, dtype=torch.bool)
    valid[1, :, -5:] = False  # padding
    return {"image": torch.randn(b, 3, size, size, generator=g), "image_s": torch.randn(b, 3, size, size, generator=g),
            "valid": valid, "image_labels": labels, "crop_labels": labels.clone(),
            "hidden_mask": torch.randint(0, C, (b, size, size), generator=g)}


def built(tiny_cfg, name: str, **params):
    torch.manual_seed(0)
    cfg = tiny_cfg(method={"name": name, **params}, data={"label_kind": "image"})
    return build_method(cfg, cfg.data.num_classes)


def step(method, batch, at: int = 0):
    torch.manual_seed(1)
    return method.train().training_step(batch, None, at)


CODE = {"aux_cam2seg": True, "threshold_search": False, "reliability": False, "contrastive": False,
        "assignment_init": "independent", "aux_last_scale_only": True, "decoder": "largefov"}


@pytest.mark.parametrize("name,params,keys", [
    ("cosa", {}, {"cls", "cls_aux", "seg", "cam", "cs", "crf"}),
    ("cosa", CODE, {"cls", "cls_aux", "seg", "cam", "crf"}),
    ("cosa", {"crf": False}, {"cls", "cls_aux", "seg", "cam", "cs"}),
    ("cam", {}, {"seg"})], ids=["cosa", "cosa-code", "cosa-no-crf", "cam"])
def test_one_step_trains_and_ignores_hidden_masks(tiny_cfg, name, params, keys):
    method = built(tiny_cfg, name, **params)
    batch = image_batch()
    first = copy.deepcopy(method)
    out = step(first, batch)
    assert set(out.losses) == keys and all(v.dim() == 0 and torch.isfinite(v) for v in out.losses.values())
    assert any(k.startswith("acc/") for k in out.diagnostics)  # hidden masks feed diagnostics only
    sum(out.losses.values()).backward()
    grads = [p.grad for net in first.students().values() for p in net.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    noisy = {**batch, "hidden_mask": torch.randint(0, C, batch["hidden_mask"].shape)}
    again = step(copy.deepcopy(method), noisy)
    assert all(torch.equal(out.losses[k], again.losses[k]) for k in keys)


def test_warm_up_is_classification_only_and_resume_is_exact(tiny_cfg):
    method = built(tiny_cfg, "cosa")
    method.set_total_steps(100)
    batch = image_batch()
    assert set(step(method, batch, 0).losses) == {"cls", "cls_aux"}  # warm-up: the search still fills its queue
    assert int(method.search.count) == 2
    fresh = built(tiny_cfg, "cosa")
    fresh.set_total_steps(100)
    fresh.load_state_dict(method.state_dict())
    for key, value in method.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    a, b = step(method, batch, 50), step(fresh, batch, 50)
    assert set(a.losses) == {"cls", "cls_aux", "seg", "cam", "cs", "crf"}
    assert all(torch.equal(a.losses[k], b.losses[k]) for k in a.losses)


def test_inspector_maps_and_layers(tiny_cfg):
    method = built(tiny_cfg, "cosa").eval()
    batch = image_batch()
    maps = method.pseudo_labels({"image": batch["image"], "valid": batch["valid"]})  # no labels: AN's classifier
    for layer in categories(method):
        assert maps[layer.key].shape == (2, 32, 32) and int(maps[layer.key].max()) < len(layer.names)
    assert torch.equal(maps["cpl_region"] == 1, maps["cpl"] == 255)
    assert (maps["cpl"][~batch["valid"]] == 255).all() and maps["cams"].shape == (2, C - 1, 32, 32)
    labelled = method.pseudo_labels(batch)  # with image labels: absent classes never appear in the CPL
    assert set(labelled["cpl"].unique().tolist()) <= {0, 3, 5, 7, 255}


def test_cam_eval_network_argmax_is_the_thresholded_cam(tiny_cfg):
    method = built(tiny_cfg, "cam", threshold=0.4, eval_net="cam").eval()
    x, fg = image_batch()["image"], image_batch()["image_labels"][:, 1:]
    net = method.eval_network()
    with torch.no_grad():
        cams = dense_cams(method.net(x)["cam"], x.shape[-2:], method.net.backbone.grids["high"])
        assert torch.equal(net(x, image_labels=fg).argmax(1), cam_pseudo_labels(cams, fg, 0.4, 0.4))
        predicted = method.net(x)["cls"] > 0
        assert torch.equal(net(x).argmax(1), cam_pseudo_labels(cams, predicted, 0.4, 0.4))
        assert net(x).shape == (2, C, 32, 32)


def test_vit_stages_resize_position_embeddings_and_expose_an_earlier_block():
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=16, num_layers=3, num_heads=2,
                                               hidden_dim=8, mlp_dim=16)
    stages = ViTStages(vit, aux_layer=-2).eval()
    low, mid, high = stages(torch.randn(2, 3, 48, 64))  # a 3 x 4 patch grid from a 2 x 2 embedding
    assert low.shape == mid.shape == high.shape == (2, 8, 3, 4) and not torch.equal(mid, high)
    with pytest.raises(ConfigError, match="vit_aux_layer"):
        ViTStages(torchvision.models.VisionTransformer(32, 16, 3, 2, 8, 16), aux_layer=5)


@pytest.mark.parametrize("params,key", [({"decoder": "unet"}, "method.decoder"), ({"low": 0.8}, "method.low"),
                                        ({"pool": "sum"}, "method.pool")])
def test_bad_settings_are_refused(tiny_cfg, params, key):
    with pytest.raises(ConfigError, match=key):
        built(tiny_cfg, "cosa", **params)
