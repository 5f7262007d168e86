"""AGMM-SASS's formulas on hand-computed tensors, its switches, a full step on a hand-built sparse batch (hidden
masks never reach a loss, no host round trip), the inspector's maps and the exact state round trip."""
import copy
import math

import pytest
import torch

from reprokit.config import ConfigError
from reprokit.methods import build_method
from reprokit.methods.agmm import (absent_class_loss, class_prototypes, class_vectors, gmm_label_loss,
                                   gmm_prediction_loss, gmm_response, prototype_separation_loss, sparse_ce)
from tests.conftest import categories
from tests.test_no_host_sync import SyncingOps

E1 = math.exp(-1)


def test_gmm_response_is_one_at_the_prototype_and_zero_for_absent_classes():
    features = torch.tensor([[[[0.0, 1.0, 2.0]], [[0.0, 1.0, 0.0]]]], requires_grad=True)  # pixels (0,0) (1,1) (2,0)
    prototypes = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]])
    present = torch.tensor([[True, True, False]])
    r = gmm_response(features, prototypes, present)
    # d = mean |f - mu|: class 0 -> 0, 1, 1; class 1 -> 1, 0, 1
    expected = torch.tensor([[[[1.0, E1, E1]], [[E1, 1.0, E1]], [[0.0, 0.0, 0.0]]]])
    assert torch.allclose(r, expected)
    # the L1 cdist gives the same gradient as the formula written out
    weights = torch.randn(r.shape, generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad((r * weights).sum(), features)
    f2 = features.detach().clone().requires_grad_(True)
    direct = torch.exp(-(f2[:, None] - prototypes[..., None, None]).abs().mean(2).square()) * present[..., None, None]
    (grad_direct,) = torch.autograd.grad((direct * weights).sum(), f2)
    assert torch.allclose(grad, grad_direct, atol=1e-6)


def test_class_prototypes_are_exact_means_of_labeled_pixels():
    features = torch.arange(16, dtype=torch.float32).reshape(2, 2, 2, 2)  # [B=2, D=2, H=2, W=2]
    sparse = torch.tensor([[[0, 3], [0, 255]], [[1, 2], [3, 3]]])  # C = 3: 3 unlabeled, 255 padding
    protos, present = class_prototypes(features, sparse, 3)
    assert present.tolist() == [[True, False, False], [False, True, True]]
    # image 0, class 0: pixels (0,0) and (1,0): channel 0 -> (0 + 2) / 2, channel 1 -> (4 + 6) / 2
    assert protos[0].tolist() == [[1.0, 5.0], [0.0, 0.0], [0.0, 0.0]]
    assert protos[1].tolist() == [[0.0, 0.0], [8.0, 12.0], [9.0, 13.0]]
    with pytest.raises(ValueError, match="differ in size"):
        class_prototypes(features[..., :1], sparse, 3)


def test_absent_class_loss_by_hand():
    probs = torch.tensor([[[[0.5, 0.25], [1.0, 0.25]],   # class 0 (present)
                           [[0.5, 0.25], [0.0, 0.75]],   # class 1 (absent)
                           [[0.0, 0.5], [0.0, 0.0]]]])   # class 2 (present)
    image_classes = torch.tensor([[True, False, True]])
    valid = torch.tensor([[[True, True], [True, False]]])
    expected = (-math.log(0.5 + 1e-6) - math.log(0.75 + 1e-6) - math.log(1 + 1e-6)) / 3
    assert absent_class_loss(probs, image_classes, valid).item() == pytest.approx(expected)
    # every absent class at p = 0: nothing to pay
    assert absent_class_loss(probs, torch.tensor([[True, False, True]]), valid.clone().fill_(False)).item() == 0
    zero_absent = torch.zeros(1, 3, 2, 2)
    zero_absent[:, 0] = 1.0
    assert absent_class_loss(zero_absent, torch.tensor([[True, False, False]]), valid).item() == pytest.approx(
        0, abs=1e-5)


def test_prototype_loss_falls_as_class_vectors_move_apart_and_mean_or_sum():
    present = torch.tensor([True, True, False])
    near = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    far = torch.tensor([[0.0, 0.0], [3.0, 3.0], [5.0, 5.0]])
    assert prototype_separation_loss(near, present).item() == pytest.approx(E1)  # one pair, d = 1
    assert prototype_separation_loss(far, present).item() == pytest.approx(math.exp(-9))
    assert prototype_separation_loss(near, torch.tensor([True, False, False])).item() == 0
    # three classes: mean of the three pair terms, d = 1, 5, 4
    all3 = prototype_separation_loss(near, torch.ones(3, dtype=torch.bool)).item()
    assert all3 == pytest.approx((E1 + math.exp(-25) + math.exp(-16)) / 3)
    # batch-level class vector: the paper's mean or the released code's sum over the images having the class
    protos = torch.tensor([[[2.0, 4.0], [1.0, 1.0]], [[4.0, 8.0], [0.0, 0.0]]])  # [B=2, C=2, D=2]
    present_b = torch.tensor([[True, True], [True, False]])
    mean, has = class_vectors(protos, present_b, "mean")
    assert mean.tolist() == [[3.0, 6.0], [1.0, 1.0]] and has.tolist() == [True, True]
    assert class_vectors(protos, present_b, "sum")[0].tolist() == [[6.0, 12.0], [1.0, 1.0]]


def test_sparse_ce_ignores_unlabeled_and_padding_pixels():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 3, 2, 2, generator=g)
    sparse = torch.tensor([[[0, 3], [255, 2]]])
    flat = logits.permute(0, 2, 3, 1).reshape(4, 3)
    expected = torch.nn.functional.cross_entropy(flat[[0, 3]], torch.tensor([0, 2]))
    assert sparse_ce(logits, sparse, 3).item() == pytest.approx(expected.item())
    changed = logits.clone()
    changed[0, :, 0, 1] += 5.0  # an unlabeled pixel
    changed[0, :, 1, 0] -= 3.0  # a padding pixel
    assert sparse_ce(changed, sparse, 3).item() == pytest.approx(expected.item())
    assert sparse_ce(logits, torch.full_like(sparse, 3), 3).item() == 0


def test_both_halves_of_the_gmm_loss_by_hand():
    probs = torch.tensor([0.75, 0.25]).reshape(1, 2, 1, 1)
    r = torch.tensor([0.5, 1.0]).reshape(1, 2, 1, 1)
    valid = torch.ones(1, 1, 1, dtype=torch.bool)
    both = torch.tensor([[True, True]])
    bce0 = -(0.5 * math.log(0.75 + 1e-6) + 0.5 * math.log(0.25 + 1e-6))
    bce1 = -math.log(0.25 + 1e-6) - 0.0 * math.log(0.75 + 1e-6)
    assert gmm_prediction_loss(probs, r, both, valid).item() == pytest.approx((bce0 + bce1) / 2 / 2)
    assert gmm_prediction_loss(probs, r, torch.tensor([[True, False]]), valid).item() == pytest.approx(bce0 / 2)
    sparse = torch.tensor([[[1]]])  # labeled class 1: r should be (0, 1)
    expected = (-math.log(1 - 0.5 + 1e-6) - math.log(1 + 1e-6)) / 2 / 2
    assert gmm_label_loss(r, sparse, both, 2).item() == pytest.approx(expected)
    assert gmm_label_loss(r, torch.tensor([[[2]]]), both, 2).item() == 0  # unlabeled pixel: no term


def sparse_batch(num_classes: int = 11, seed: int = 0) -> dict:
    """Two 32x32 crops as the data layer hands them: image 0 fully inside the image, image 1 with its bottom
    8 rows padding; six labeled pixels; image 0's uncropped label also has class 5."""
    g = torch.Generator().manual_seed(seed)
    b, h, w = 2, 32, 32
    valid = torch.ones(b, h, w, dtype=torch.bool)
    valid[1, 24:] = False
    sparse = torch.full((b, h, w), num_classes)
    sparse[1, 24:] = 255
    for img, y, x, k in [(0, 2, 2, 0), (0, 20, 20, 0), (0, 10, 10, 3), (1, 5, 5, 0), (1, 12, 12, 7), (1, 13, 13, 7)]:
        sparse[img, y, x] = k
    image_labels = torch.zeros(b, num_classes, dtype=torch.bool)
    image_labels[0, [0, 3, 5]] = True
    image_labels[1, [0, 7]] = True
    crop_labels = image_labels.clone()
    crop_labels[0, 5] = False
    hidden = torch.randint(0, num_classes, (b, h, w), generator=g).masked_fill(~valid, 255)
    return {"image": torch.randn(b, 3, h, w, generator=g), "valid": valid, "sparse": sparse,
            "image_labels": image_labels, "crop_labels": crop_labels, "hidden_mask": hidden}


def build(tiny_cfg, **params):
    torch.manual_seed(0)
    cfg = tiny_cfg(method={"name": "agmm", **params}, data={"label_kind": "points"})
    return build_method(cfg, cfg.data.num_classes)


def run_step(method, batch):
    torch.manual_seed(1)
    return copy.deepcopy(method).train().training_step(batch, None, 0)


def test_a_full_step_trains_and_never_reads_hidden_masks(tiny_cfg):
    method = build(tiny_cfg)
    assert method.label_kinds == ("points", "scribbles", "clicks") and not method.uses_unlabeled
    batch = sparse_batch()
    method.train()
    torch.manual_seed(1)
    out = method.training_step(batch, None, 0)
    assert set(out.losses) == {"seg", "gmm_pred", "gmm_label", "proto", "cls"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in out.losses.values())
    sum(out.losses.values()).backward()
    for part in (method.net.backbone, method.net.classifier):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    d = out.diagnostics
    assert d["labeled"].item() == pytest.approx(6 / (1024 + 768))
    assert 0 < d["gmm_response"].item() <= 1 and 0 <= d["acc/gmm"].item() <= 1
    noisy = {**batch, "hidden_mask": torch.randint(0, 11, (2, 32, 32), generator=torch.Generator().manual_seed(5))}
    real, other = run_step(method, batch).losses, run_step(method, noisy).losses
    assert all(torch.equal(real[k], other[k]) for k in real)
    assert "acc/gmm" not in run_step(method, {k: v for k, v in batch.items() if k != "hidden_mask"}).diagnostics
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the loss terms stay in float32
        mixed = run_step(method, batch).losses
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in mixed.values())


def test_the_step_dispatches_nothing_that_syncs(tiny_cfg):
    method = build(tiny_cfg).train()
    with SyncingOps() as ops:
        sum(method.training_step(sparse_batch(), None, 0).losses.values()).backward()
    assert ops.found == []


@pytest.mark.parametrize("off", ["seg", "gmm", "proto", "cls"])
def test_each_switch_removes_only_its_term(tiny_cfg, off):
    full = run_step(build(tiny_cfg), sparse_batch()).losses
    part = run_step(build(tiny_cfg, **{off: False}), sparse_batch()).losses
    gone = {"gmm": {"gmm_pred", "gmm_label"}}.get(off, {off})
    assert set(part) == set(full) - gone
    assert all(torch.allclose(part[k], full[k]) for k in part)


def test_class_vector_choice_weights_and_bad_settings(tiny_cfg):
    mean = run_step(build(tiny_cfg), sparse_batch()).losses
    summed = run_step(build(tiny_cfg, class_vector="sum", cls_weight=2.0), sparse_batch()).losses
    assert not torch.equal(mean["proto"], summed["proto"]) and torch.equal(mean["seg"], summed["seg"])
    assert torch.allclose(summed["cls"], 2 * mean["cls"])
    with pytest.raises(ConfigError, match="method.class_vector"):
        build(tiny_cfg, class_vector="median")
    with pytest.raises(ConfigError, match="every loss term"):
        build(tiny_cfg, seg=False, gmm=False, proto=False, cls=False)
    with pytest.raises(KeyError, match="sparse"):
        build(tiny_cfg).training_step({"image": torch.zeros(1, 3, 32, 32), "mask": torch.zeros(1, 32, 32)}, None, 0)


def test_inspector_maps_with_and_without_sparse_labels(tiny_cfg):
    method = build(tiny_cfg).eval()
    batch = sparse_batch()
    maps = method.pseudo_labels(batch)
    for key in ("teacher_label", "confidence", "student_pred", "gmm_label", "gmm_response", "gmm/0", "gmm/10"):
        assert maps[key].shape == (2, 32, 32), key
    for layer in categories(method):
        assert int(maps[layer.key].max()) < len(layer.names) == len(layer.colours)
    agreement = maps["gmm_agreement"]
    assert (agreement[batch["sparse"] < 11] == 0).all() and (agreement[~batch["valid"]] == 3).all()
    assert (maps["gmm_label"][~batch["valid"]] == 255).all()
    assert set(maps["gmm_label"][batch["valid"]].unique().tolist()) <= {0, 3, 7}  # the crops' classes only
    bare = method.pseudo_labels({"image": batch["image"], "valid": batch["valid"]})
    assert (bare["gmm_agreement"] == 3).all() and (bare["gmm_label"] == 255).all()


def test_state_dict_round_trip(tiny_cfg):
    method = build(tiny_cfg).train()
    sum(method.training_step(sparse_batch(), None, 0).losses.values()).backward()  # BN statistics move
    torch.manual_seed(3)
    fresh = build_method(method.cfg, 11)
    fresh.load_state_dict(method.state_dict())
    for key, value in method.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    x = sparse_batch()["image"]
    assert torch.equal(fresh.eval().eval_network()(x), method.eval().eval_network()(x))
