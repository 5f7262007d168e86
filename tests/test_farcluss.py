"""FARCLUSS's formulas (reprokit's reading of the description) on hand-computed tensors, their invariants, the
method's four switches and its exact resume (class-frequency estimate and prototypes included)."""
import math

import pytest
import torch

from reprokit.config import ConfigError
from reprokit.methods import build_method
from reprokit.methods.farcluss import (FARCLUSS, centroid_push_loss, class_histogram, entropy_weights,
                                       fuzzy_targets, prototype_pull_loss, rebalance_weights, soft_weighted_ce,
                                       update_class_frequencies)
from tests.conftest import step_batches


def _pixel(*probs) -> torch.Tensor:
    """One pixel's distribution as [1, C, 1, 1]."""
    return torch.tensor(probs).view(1, -1, 1, 1)


def test_fuzzy_targets_by_hand():
    q = fuzzy_targets(_pixel(0.5, 0.3, 0.15, 0.05), 2).flatten()
    assert q.tolist() == pytest.approx([0.625, 0.375, 0, 0])
    q3 = fuzzy_targets(_pixel(0.5, 0.3, 0.15, 0.05), 3).flatten()
    assert q3.tolist() == pytest.approx([0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0])
    assert fuzzy_targets(_pixel(0.2, 0.7, 0.1), 1).flatten().tolist() == [0, 1, 0]


def test_fuzzy_targets_sum_to_one_and_sit_on_the_top_k():
    probs = torch.randn(2, 7, 5, 5, generator=torch.Generator().manual_seed(0)).softmax(1)
    for k in (1, 2, 3, 7):
        q = fuzzy_targets(probs, k)
        assert torch.allclose(q.sum(1), torch.ones(2, 5, 5))
        assert ((q > 0).sum(1) == k).all()
        top = probs.topk(k, dim=1).indices
        assert torch.equal(torch.zeros_like(q, dtype=torch.bool).scatter_(1, top, True), q > 0)


def test_entropy_weights_by_hand():
    w = entropy_weights(torch.cat([_pixel(1.0, 0, 0, 0), _pixel(0.25, 0.25, 0.25, 0.25), _pixel(0.5, 0.5, 0, 0)], 3))
    assert w.flatten().tolist() == pytest.approx([1.0, 0.0, 0.5])  # H = log 2 of log 4
    probs = torch.randn(3, 5, 4, 4, generator=torch.Generator().manual_seed(1)).softmax(1)
    assert entropy_weights(probs).min() >= 0 and entropy_weights(probs).max() <= 1


def test_rebalance_weights_by_hand():
    w = rebalance_weights(torch.tensor([64.0, 16.0, 4.0]))  # 1/sqrt: 1/8, 1/4, 1/2 -> mean 7/24
    assert w.tolist() == pytest.approx([3 / 7, 6 / 7, 12 / 7])
    assert rebalance_weights(torch.tensor([5.0, 5.0])).tolist() == pytest.approx([1.0, 1.0])


def test_rebalance_weights_are_positive_larger_for_rarer_classes_and_one_on_average():
    counts = torch.tensor([900.0, 50.0, 0.0, 3.0, 47.0])
    w = rebalance_weights(counts)
    present = counts > 0
    assert (w > 0).all() and w[present].mean().item() == pytest.approx(1.0)
    order = counts[present].argsort()  # rarest first
    assert (w[present][order][:-1] > w[present][order][1:]).all()
    assert w[2] == w[present].max()  # never seen: as rare as the rarest seen
    assert rebalance_weights(counts * 7).tolist() == pytest.approx(w.tolist())  # any scale


def test_class_frequencies_are_smoothed_over_steps():
    label = torch.tensor([[0, 0, 1, 255]])
    assert class_histogram(label, 3).tolist() == pytest.approx([2 / 3, 1 / 3, 0])
    freq = update_class_frequencies(torch.full((3,), 1 / 3), label, 0.9)
    assert freq.tolist() == pytest.approx([0.9 / 3 + 0.1 * 2 / 3, 0.9 / 3 + 0.1 / 3, 0.9 / 3])
    assert torch.equal(update_class_frequencies(freq, torch.full((1, 4), 255), 0.9), freq)


def test_soft_weighted_ce_by_hand():
    logits = torch.zeros(1, 2, 1, 2)  # uniform: -log p = log 2 for both classes
    targets = torch.tensor([[[[0.75, 1.0]], [[0.25, 0.0]]]])
    pixel_w = torch.tensor([[[0.5, 1.0]]])
    class_w = torch.tensor([2.0, 4.0])
    valid = torch.tensor([[[True, False]]])
    expected = 0.5 * (2 * 0.75 + 4 * 0.25) * math.log(2)  # the second pixel is padding
    assert soft_weighted_ce(logits, targets, pixel_w, class_w, valid).item() == pytest.approx(expected)
    assert soft_weighted_ce(logits, targets, pixel_w, class_w, valid & False).item() == 0


def test_prototype_pull_and_centroid_push_by_hand():
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # class 1 has no prototype yet
    feats = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    assert prototype_pull_loss(feats, labels, prototypes).item() == pytest.approx((0 + 1) / 2)
    centroids = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    present = torch.tensor([True, True, True])
    c = 1 / math.sqrt(2)  # cos(0,1) = cos(1,0); pairs with class 2 are at or past 90 degrees
    assert centroid_push_loss(centroids, present).item() == pytest.approx(2 * c / 6)
    assert centroid_push_loss(centroids, torch.tensor([True, False, False])).item() == 0


@pytest.mark.parametrize("params", [{}, {"fuzzy": False}, {"entropy_weighting": False}, {"rebalancing": False},
                                    {"contrastive": False}, {"top_k": 3}])
def test_each_switch_runs_a_step(tiny_cfg, params):
    torch.manual_seed(0)
    cfg = tiny_cfg(method={"name": "farcluss", **params})
    method = build_method(cfg, cfg.data.num_classes)
    labeled, unlabeled = step_batches(cfg)
    out = method.training_step(labeled, unlabeled, step=0)
    expected = {"sup", "unsup"} | (set() if params.get("contrastive") is False else {"pull", "push"})
    assert set(out.losses) == expected and all(torch.isfinite(v) for v in out.losses.values())
    d = out.diagnostics
    assert 0 <= float(d["entropy_weight"]) <= 1 and {"acc/teacher", "acc/in_fuzzy", "class_weight/0"} <= set(d)
    if params.get("entropy_weighting") is False:
        assert float(d["entropy_weight"]) == pytest.approx(1.0)
    moved = not torch.equal(method.class_freq, torch.full((11,), 1 / 11))
    assert moved == (params.get("rebalancing") is not False)
    assert bool(method.prototypes.abs().sum() > 0) == (params.get("contrastive") is not False)


def test_a_fuzzy_label_needs_two_classes(tiny_cfg):
    with pytest.raises(ConfigError, match="method.top_k"):
        build_method(tiny_cfg(method={"name": "farcluss", "top_k": 1}), 11)
    assert isinstance(build_method(tiny_cfg(method={"name": "farcluss", "top_k": 1, "fuzzy": False}), 11), FARCLUSS)


def test_inspector_maps_bin_top_mass_and_reliability(tiny_cfg):
    cfg = tiny_cfg(method={"name": "farcluss"})
    method = build_method(cfg, 11).eval()
    labeled, _ = step_batches(cfg)
    maps = method.pseudo_labels(labeled)
    assert int(maps["top_mass"].min()) >= 1  # with two classes the top one holds at least half the mass
    assert int(maps["reliability"].max()) <= 3
