"""CW-BASS's formulas on hand-computed tensors, their invariants, the method's switches and its exact resume."""
import math

import pytest
import torch

from reprokit.config import ConfigError
from reprokit.methods import build_method
from reprokit.methods.cw_bass import (boundary_ce, boundary_mask, confidence_weighted_ce, decayed_confidence,
                                      dynamic_threshold, thresholded_labels)
from tests.conftest import step_batches


def test_dynamic_threshold_by_hand():
    # mean 0.5: 0.6 / (1 + e^0) = 0.3
    assert dynamic_threshold(torch.tensor([[0.2, 0.8]])).item() == pytest.approx(0.3)
    # mean 1.0: 0.6 / (1 + e^-0.25) = 0.337308...
    assert dynamic_threshold(torch.ones(2, 3, 3)).item() == pytest.approx(0.6 / (1 + math.exp(-0.25)))
    # mean 0.1: 0.6 / (1 + e^0.2) = 0.270 -> clamped to 0.3
    assert dynamic_threshold(torch.full((4,), 0.1)).item() == pytest.approx(0.3)


def test_dynamic_threshold_stays_in_its_range_and_rises_with_mean_confidence():
    means = torch.linspace(0, 1, 101)
    taus = torch.stack([dynamic_threshold(m.expand(3)) for m in means])
    assert taus.min() == pytest.approx(0.3) and taus.max() <= 0.8
    assert (taus[1:] >= taus[:-1]).all()
    rising = taus > 0.3 + 1e-6  # above the lower clamp (mean > 0.5) it rises strictly
    assert rising.sum() > 40 and (taus[1:][rising[:-1]] > taus[:-1][rising[:-1]]).all()
    assert taus.max() == pytest.approx(0.6 / (1 + math.exp(-0.25)))  # 0.337: the 0.8 clamp is never reached


def test_confidence_weighted_ce_by_hand():
    logits = torch.zeros(1, 2, 1, 3)  # uniform: CE = log 2 at every pixel
    logits[0, 0, 0, 2] = math.log(3)  # pixel 2: p(class 0) = 3/4
    target = torch.tensor([[[0, 255, 0]]])
    conf = torch.tensor([[[0.5, 0.9, 0.8]]])
    expected = (0.5 * math.log(2) + 0.8 * -math.log(0.75)) / 2  # the 255 pixel leaves the denominator
    assert confidence_weighted_ce(logits, target, conf).item() == pytest.approx(expected)
    expected_sq = (0.25 * math.log(2) + 0.64 * -math.log(0.75)) / 2
    assert confidence_weighted_ce(logits, target, conf, gamma=2.0).item() == pytest.approx(expected_sq)
    assert confidence_weighted_ce(logits, torch.full_like(target, 255), conf).item() == 0


def test_threshold_ignores_pixels_at_or_below_tau_and_decay_scales():
    label = torch.tensor([[1, 2, 3]])
    kept = thresholded_labels(label, torch.tensor([[0.3, 0.31, 0.9]]), torch.tensor(0.3))
    assert kept.tolist() == [[255, 2, 3]]
    assert decayed_confidence(torch.tensor([0.5, 1.0]), 0.9).tolist() == pytest.approx([0.45, 0.9])


def test_sobel_boundary_of_a_one_hot_square_is_exactly_its_outline():
    label = torch.full((1, 9, 9), 255)
    label[0, 3:6, 3:6] = 2  # a 3x3 square of class 2, nothing else labeled
    expected = torch.zeros(1, 9, 9, dtype=torch.bool)
    expected[0, 2:7, 2:7] = True  # the square grown by one pixel ...
    expected[0, 4, 4] = False  # ... minus its interior: inner and outer one-pixel rings
    assert torch.equal(boundary_mask(label, 4), expected)


def test_boundary_between_two_classes_and_along_the_zero_padded_edge():
    label = torch.zeros(1, 6, 6, dtype=torch.long)
    label[0, :, 3:] = 1  # two halves
    band = boundary_mask(label, 2)[0]
    assert band[:, 2:4].all()  # both sides of the class edge
    assert band[0].all() and band[-1].all() and band[:, 0].all()  # zero padding: the image frame
    assert not band[1:-1, 1].any() and not band[1:-1, 4].any()  # inside each half: nothing
    assert not boundary_mask(torch.full((1, 5, 5), 255), 3).any()  # nothing labeled: no boundary


def test_boundary_ce_averages_plain_ce_over_kept_band_pixels():
    logits = torch.zeros(1, 2, 1, 3)
    target = torch.tensor([[[0, 1, 255]]])
    band = torch.tensor([[[True, False, True]]])
    assert boundary_ce(logits, target, band).item() == pytest.approx(math.log(2))
    assert boundary_ce(logits, target, torch.zeros_like(band)).item() == 0


@pytest.mark.parametrize("params", [{}, {"boundary": False}, {"dynamic_threshold": False},
                                    {"confidence_decay": True}, {"views": "single"}])
def test_each_switch_runs_a_step(tiny_cfg, params):
    torch.manual_seed(0)
    cfg = tiny_cfg(method={"name": "cw_bass", **params})
    method = build_method(cfg, cfg.data.num_classes)
    labeled, unlabeled = step_batches(cfg)
    if params.get("views") == "single":
        assert method.unlabeled_batches == 1
        unlabeled = {k: v[: cfg.data.batch_size] for k, v in unlabeled.items()}
    out = method.training_step(labeled, unlabeled, step=0)
    assert set(out.losses) == {"sup", "unsup"} and all(torch.isfinite(v) for v in out.losses.values())
    d = out.diagnostics
    assert 0.3 <= float(d["threshold"]) <= 0.8 or params.get("dynamic_threshold") is False
    assert 0 <= float(d["boundary"]) <= float(d["kept"]) <= 1
    assert {"acc/teacher", "acc/kept", "acc/boundary"} <= set(d)


def test_the_boundary_switch_changes_only_the_unsupervised_loss(tiny_cfg):
    labeled, unlabeled = step_batches(tiny_cfg())
    losses = {}
    for on in (True, False):
        torch.manual_seed(0)
        cfg = tiny_cfg(method={"name": "cw_bass", "boundary": on})
        losses[on] = build_method(cfg, 11).training_step(labeled, unlabeled, step=0).losses
    assert torch.equal(losses[True]["sup"], losses[False]["sup"])
    assert losses[True]["unsup"] > losses[False]["unsup"]


def test_unknown_view_choice_is_refused(tiny_cfg):
    with pytest.raises(ConfigError, match="method.views"):
        cfg = tiny_cfg(method={"name": "cw_bass", "views": "weak"})
        build_method(cfg, 11)


def test_inspector_map_marks_kept_band_and_ignored(tiny_cfg):
    cfg = tiny_cfg(method={"name": "cw_bass"})
    method = build_method(cfg, 11).eval()
    labeled, _ = step_batches(cfg)
    maps = method.pseudo_labels(labeled)
    use = maps["use"]
    assert set(use.unique().tolist()) <= {0, 1, 2}
    tau = dynamic_threshold(maps["confidence"][labeled["valid"]])
    assert torch.equal(use[labeled["valid"]] == 2, maps["confidence"][labeled["valid"]] <= tau)


def test_confidence_decay_reaches_the_loss_weights_only(tiny_cfg):
    """c = [0.32, 0.9, 0.9, 0.9]: the threshold of the undecayed mean 0.755 is 0.319, so pixel 0 is kept; had the
    decayed confidences (x 0.9) been thresholded (tau 0.314 against c 0.288) it would be dropped."""
    cfg = tiny_cfg(method={"name": "cw_bass", "confidence_decay": True})
    method = build_method(cfg, cfg.data.num_classes)
    conf, label = torch.tensor([[[0.32, 0.9, 0.9, 0.9]]]), torch.tensor([[[1, 1, 2, 2]]])
    weights, tau, kept, _ = method.targets(conf, label, torch.ones_like(label, dtype=torch.bool))
    assert tau.item() == pytest.approx(0.6 / (1 + math.exp(-0.5 * (0.755 - 0.5))), abs=1e-6)
    assert kept.tolist() == label.tolist()
    assert torch.allclose(weights, conf * 0.9)
    assert dynamic_threshold(conf * 0.9).item() > 0.32 * 0.9  # the other reading drops pixel 0
