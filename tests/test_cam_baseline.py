"""The two-stage CAM baseline (``method.name: cam``): stage 1 trains the CAM classifier alone, stage 2 trains the
segmentation network on the frozen classifier's thresholded CAMs, made here by hand; the image labels bound the
classes of the pseudo-masks, the hidden masks never reach a loss, and the state and the evaluated network hold."""
import copy

import pytest
import torch
import torch.nn.functional as F

from reprokit.config import ConfigError
from reprokit.labels import IGNORE_INDEX
from reprokit.methods import build_method
from reprokit.methods.cam import ThresholdedCAM, cam_pseudo_labels, dense_cams
from tests.conftest import step_batches

STAGE2 = 5  # stage1 0.5 of 10 steps


def built(tiny_cfg, **params):
    torch.manual_seed(0)
    cfg = tiny_cfg(method={"name": "cam", **params}, data={"label_kind": "image"})
    method = build_method(cfg, cfg.data.num_classes)
    method.set_total_steps(10)
    labeled, _ = step_batches(cfg)
    return method, labeled


def step(method, labeled, at):
    torch.manual_seed(1)
    return method.train().training_step(labeled, None, at)


def grads(net):
    return [p.grad for p in net.parameters()]


def test_stage1_trains_the_classifier_alone(tiny_cfg):
    method, labeled = built(tiny_cfg)
    assert method.may_skip_params and set(method.students().values()) == {method.net, method.seg_net}
    out = step(method, labeled, STAGE2 - 1)
    assert set(out.losses) == {"cls"} and torch.isfinite(out.losses["cls"])
    assert {"cls_acc", "acc/cam", "cam/ignored"} <= set(out.diagnostics)
    out.losses["cls"].backward()
    assert any(g is not None and g.abs().sum() > 0 for g in grads(method.net))
    assert all(g is None for g in grads(method.seg_net))


def test_stage2_learns_the_frozen_classifiers_thresholded_cams(tiny_cfg):
    method, labeled = built(tiny_cfg, threshold=0.4)
    x, valid = labeled["image"], labeled["valid"]
    by_hand = copy.deepcopy(method)
    with torch.no_grad():
        cams = dense_cams(by_hand.net.eval()(x)["cam"], x.shape[-2:], by_hand.net.backbone.grids["high"])
        target = cam_pseudo_labels(cams, labeled["image_labels"][:, 1:], 0.4, 0.4).masked_fill(~valid, IGNORE_INDEX)
    assert (target == 0).any() and ((target > 0) & (target != IGNORE_INDEX)).any()  # not a trivial mask
    bn_before = {k: v.clone() for k, v in method.net.state_dict().items() if "running" in k}

    out = step(method, labeled, STAGE2)
    assert set(out.losses) == {"seg"} and torch.isfinite(out.losses["seg"])
    assert torch.equal(method.pseudo_masks(method.frozen_cams(x), labeled), target)
    torch.manual_seed(1)  # the same dropout draw as the step
    expected = F.cross_entropy(by_hand.seg_net.train()(x), target, ignore_index=IGNORE_INDEX)
    assert torch.allclose(out.losses["seg"], expected)
    out.losses["seg"].backward()
    assert all(g is None for g in grads(method.net))
    assert any(g is not None and g.abs().sum() > 0 for g in grads(method.seg_net))
    assert method.net.training  # the classifier ran in eval mode and was put back
    assert all(torch.equal(method.net.state_dict()[k], v) for k, v in bn_before.items())  # BN statistics frozen


def test_absent_classes_never_enter_the_pseudo_masks(tiny_cfg):
    method, labeled = built(tiny_cfg, low=0.3, high=0.6)
    with torch.no_grad():
        cams = method.frozen_cams(labeled["image"])
        mask = method.pseudo_masks(cams, labeled)
        for m, present in zip(mask, labeled["image_labels"]):
            allowed = set(present.nonzero().flatten().tolist()) | {IGNORE_INDEX}
            assert set(m.unique().tolist()) <= allowed
        assert (mask == IGNORE_INDEX)[labeled["valid"]].any()  # the band ignores some pixels
        background = torch.zeros_like(labeled["image_labels"])
        background[:, 0] = True  # no foreground class: background wherever valid
        assert set(method.pseudo_masks(cams, {**labeled, "image_labels": background}).unique().tolist()) <= {0, 255}


@pytest.mark.parametrize("at", [0, STAGE2], ids=["stage1", "stage2"])
def test_losses_ignore_hidden_masks(tiny_cfg, at):
    method, labeled = built(tiny_cfg)
    noisy = {**labeled, "hidden_mask": torch.randint(0, 11, labeled["hidden_mask"].shape)}
    real, again = step(copy.deepcopy(method), labeled, at), step(copy.deepcopy(method), noisy, at)
    assert real.losses.keys() == again.losses.keys()
    assert all(torch.equal(real.losses[k], again.losses[k]) for k in real.losses)
    assert "acc/cam" in real.diagnostics  # the hidden masks feed diagnostics only


def test_state_dict_round_trip_and_evaluated_networks(tiny_cfg):
    method, labeled = built(tiny_cfg)
    step(method, labeled, STAGE2)
    fresh, _ = built(tiny_cfg)
    fresh.load_state_dict(method.state_dict())
    assert any(k.startswith("seg_net.") for k in method.state_dict())
    for key, value in method.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    assert torch.equal(step(method, labeled, STAGE2).losses["seg"], step(fresh, labeled, STAGE2).losses["seg"])

    b, _, h, w = labeled["image"].shape
    assert method.eval_network() is method.seg_net
    cam_method, _ = built(tiny_cfg, eval_net="cam")
    assert isinstance(cam_method.eval_network(), ThresholdedCAM)
    with torch.no_grad():
        for net in (method.eval().eval_network(), cam_method.eval().eval_network()):
            assert net(labeled["image"]).shape == (b, 11, h, w)


@pytest.mark.parametrize("params,key", [({"low": 0.7, "high": 0.3}, "method.low"),
                                        ({"stage1": 1.0}, "method.stage1"), ({"eval_net": "both"}, "method.eval_net")])
def test_bad_settings_are_refused(tiny_cfg, params, key):
    with pytest.raises(ConfigError, match=key):
        built(tiny_cfg, **params)
