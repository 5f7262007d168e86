"""Protocol options of the teacher-student methods: burn-in and ramp, EMA warm-up, strong-view strength,
strong passes that leave BN statistics alone, the evaluated network, and the oracle headroom instrument."""
import numpy as np
import pytest
import torch

from reprokit.config import ConfigError
from reprokit.data.datasets import SegDataset, resolve_splits
from reprokit.methods import build_method
from reprokit.methods.semi import frozen_bn_statistics, teacher_targets, unsup_weight
from reprokit.methods.stpg import weighted_ce
from tests.conftest import step_batches


def _mt(tiny_cfg, total=10, **method):
    torch.manual_seed(0)
    cfg = tiny_cfg(method={"name": "mean_teacher", **method})
    m = build_method(cfg, cfg.data.num_classes)
    m.set_total_steps(total)
    return cfg, m


def test_ramp_rises_linearly_after_burn_in(tiny_cfg):
    _, m = _mt(tiny_cfg, total=100, unsup_start=0.2, unsup_ramp=0.1, lambda_u=2.0)
    weights = [unsup_weight(m, s) for s in range(100)]
    assert weights[:20] == [0.0] * 20
    assert weights[20] == pytest.approx(0.2) and weights[24] == pytest.approx(1.0)
    assert weights[29:] == [2.0] * 71
    assert all(a <= b for a, b in zip(weights, weights[1:]))


def test_ema_warmup_follows_the_student_early(tiny_cfg):
    _, warm = _mt(tiny_cfg, ema_warmup=True, ema_momentum=0.99)
    _, plain = _mt(tiny_cfg, ema_momentum=0.99)
    assert warm.ema_momentum(0.99, 0) == 0.0 and warm.ema_momentum(0.99, 9) == pytest.approx(0.9)
    assert warm.ema_momentum(0.99, 5000) == 0.99
    assert plain.ema_momentum(0.99, 0) == 0.99


def test_strong_pass_can_leave_bn_statistics_alone(tiny_cfg):
    net = build_method(tiny_cfg(), 11).net
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    with frozen_bn_statistics(net):
        net(torch.randn(2, 3, 32, 32))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items() if "running" in k)
    net(torch.randn(2, 3, 32, 32))
    assert not all(torch.equal(before[k], v) for k, v in net.state_dict().items() if "running" in k)
    assert all(m.momentum == 0.1 for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))


@pytest.mark.parametrize("update", [True, False])
def test_strong_bn_update_switch_in_a_step(tiny_cfg, update):
    cfg, m = _mt(tiny_cfg, strong_bn_update=update)
    labeled, unlabeled = step_batches(cfg)
    m.train()
    m.training_step(labeled, unlabeled, step=0)
    after_both = {k: v.clone() for k, v in m.student.state_dict().items() if "running_mean" in k}
    _, m2 = _mt(tiny_cfg, strong_bn_update=update)
    m2.train()
    m2.student(labeled["image"])  # the labeled pass alone
    after_labeled = {k: v for k, v in m2.student.state_dict().items() if "running_mean" in k}
    same = all(torch.allclose(after_both[k], after_labeled[k]) for k in after_both)
    assert same == (not update)


def test_eval_net_chooses_student_or_teacher(tiny_cfg):
    _, m = _mt(tiny_cfg)
    assert m.eval_network() is m.student
    _, m = _mt(tiny_cfg, eval_net="teacher")
    assert m.eval_network() is m.teacher
    torch.manual_seed(0)
    cfg = tiny_cfg(method={"name": "stpg", "proj_dim": 16, "bank_size": 8, "eval_net": "teacher"})
    stpg = build_method(cfg, 11)
    assert stpg.eval_network() is stpg.gen_teacher


@pytest.mark.parametrize("key,value", [("eval_net", "ema"), ("unsup_ramp", 1.5), ("unsup_start", -0.1)])
def test_bad_protocol_options_name_the_key(tiny_cfg, key, value):
    with pytest.raises(ConfigError, match=f"method.{key}"):
        build_method(tiny_cfg(method={"name": "mean_teacher", key: value}), 11)


def test_oracle_trains_the_unsupervised_path_on_hidden_ground_truth(tiny_cfg):
    """The oracle's unsupervised loss is Mean Teacher's weighted CE with the hidden masks as labels and
    confidence 1, and differs from the teacher-labelled loss."""
    cfg, m = _mt(tiny_cfg, oracle=True)
    m.eval()
    labeled, unlabeled = step_batches(cfg)
    out = m.training_step(labeled, unlabeled, step=3)
    views = m.views(unlabeled, 3)
    gt = views.gt.masked_fill(~views.valid, 255)
    with torch.no_grad():
        want = weighted_ce(m.student(views.x_s), gt, torch.ones(gt.shape))
        _, pseudo = teacher_targets(m.teacher(views.x_w).softmax(1), views)
        teacher_loss = weighted_ce(m.student(views.x_s), pseudo, torch.ones(gt.shape))
    assert torch.allclose(out.losses["unsup"], want, atol=1e-6)
    assert not torch.allclose(want, teacher_loss)


def test_oracle_without_hidden_masks_is_refused(tiny_cfg):
    cfg, m = _mt(tiny_cfg, oracle=True)
    labeled, unlabeled = step_batches(cfg)
    del unlabeled["hidden_mask"]
    with pytest.raises(ValueError, match="method.oracle"):
        m.training_step(labeled, unlabeled, step=0)


def test_strong_view_magnitudes_come_from_the_config(tiny_cfg):
    off = tiny_cfg(data={"strong": {"jitter_p": 0.0, "grayscale_p": 0.0, "blur_p": 0.0}})
    on = tiny_cfg(data={"strong": {"jitter_p": 1.0, "brightness": 0.9, "grayscale_p": 0.0, "blur_p": 0.0}})
    items = []
    for cfg in (off, on):
        ds = SegDataset(resolve_splits(cfg.data).unlabeled, cfg.data, train=True, strong=True)
        items.append(ds[(0, 3)])
    assert torch.equal(items[0]["image"], items[0]["image_s"])  # every op off: the strong view is the weak one
    assert not torch.equal(items[1]["image"], items[1]["image_s"])
    with pytest.raises(ConfigError, match="data.strong.blur_sigma"):
        tiny_cfg(data={"strong": {"blur_sigma": [2.0, 1.0]}})
    with pytest.raises(ConfigError, match="data.strong.blur_p"):
        tiny_cfg(data={"strong": {"blur_p": 1.5}})
    assert np.isclose(on.data.strong.brightness, 0.9)
