import torch
from torch import nn

from reprokit.config import EvalConfig, ModelConfig, OptimConfig
from reprokit.data.sampler import StepBatchSampler
from reprokit.engine.checkpoint import FORMAT, CheckpointError, load_checkpoint, save_atomic
from reprokit.engine.distributed import DistInfo
from reprokit.engine.ema import ema_update
from reprokit.engine.evaluate import predict_probs
from reprokit.engine.optim import build_optimizer, poly_factor, poly_scheduler
from reprokit.models.deeplab import build_network

import pytest


def test_param_groups_no_decay_on_norm_and_bias_and_head_multiplier():
    net = build_network(ModelConfig(aspp_channels=8, decoder_channels=8, low_level_channels=4), 3)
    opt = build_optimizer({"net": net}, OptimConfig(lr=0.1, weight_decay=1e-4, head_lr_mult=10))
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["backbone"]["lr"] == 0.1 and groups["head"]["lr"] == pytest.approx(1.0)
    assert groups["backbone_nodecay"]["weight_decay"] == 0 and groups["head"]["weight_decay"] == 1e-4
    assert all(p.ndim <= 1 for p in groups["head_nodecay"]["params"])
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(net.parameters()))


def test_poly_schedule():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.01)
    sched = poly_scheduler(opt, total=10, power=0.9)
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5 ** 0.9)
    assert poly_factor(10, 10, 0.9) == 0


def test_ema_update_formula():
    t, s = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
    with torch.no_grad():
        t.weight.fill_(1.0), s.weight.fill_(3.0), s.running_mean.fill_(2.0)
    s.num_batches_tracked.fill_(7)
    ema_update(t, s, 0.9)
    assert torch.allclose(t.weight, torch.full((2,), 1.2))
    assert torch.allclose(t.running_mean, torch.full((2,), 0.2))
    assert int(t.num_batches_tracked) == 7


def test_sampler_resume_and_rank_partition():
    full = StepBatchSampler(10, 3, seed=1, stream=0, total_steps=8)
    resumed = StepBatchSampler(10, 3, seed=1, stream=0, start_step=5, total_steps=8)
    assert list(full)[5:] == list(resumed)
    first_pass = [i for b in list(full)[:3] for i, _ in b][:9] + [i for i, _ in full.batch_at(3)][:1]
    assert sorted(first_pass) == list(range(10))  # each pass is a permutation
    r0 = StepBatchSampler(10, 2, 1, 0, rank=0, world_size=2).batch_at(4)
    r1 = StepBatchSampler(10, 2, 1, 0, rank=1, world_size=2).batch_at(4)
    single = StepBatchSampler(10, 4, 1, 0).batch_at(4)
    assert sorted(r0 + r1) == sorted(single)


def test_checkpoint_atomic_corrupt_and_foreign(tmp_path):
    p = save_atomic({"format": FORMAT, "step": 3}, tmp_path / "c.pt")
    assert load_checkpoint(p)["step"] == 3 and not list(tmp_path.glob(".*tmp*"))
    (tmp_path / "bad.pt").write_bytes(p.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=r"bad.pt: corrupt"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match=r"foreign.pt: not a reprokit checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


class _Echo(nn.Module):
    """Logits = the input's first 3 channels: translation-equivariant, so every mode must agree."""

    def forward(self, x):
        return x[:, :3] * 10


@pytest.mark.parametrize("mode", ["whole", "sliding"])
def test_eval_modes_agree_on_a_pointwise_network(mode):
    x = torch.randn(2, 3, 23, 17)
    ref = (x * 10).softmax(1)
    cfg = EvalConfig(mode=mode, scales=[1.0], flip=True)
    out = predict_probs(_Echo(), x, cfg, crop=8, num_classes=3)
    assert torch.allclose(out, ref, atol=1e-5)
    DistInfo()  # single-process defaults construct


def test_warmup_rises_linearly_under_the_poly_decay_and_adamw_is_built():
    from torch import nn

    from reprokit.config import OptimConfig
    from reprokit.engine.optim import WARMUP_START, build_optimizer, poly_factor, poly_scheduler, warmup_factor

    assert warmup_factor(0, 10) == WARMUP_START and warmup_factor(5, 10) == pytest.approx(0.5, abs=1e-6)
    assert warmup_factor(10, 10) == warmup_factor(3, 0) == 1.0
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    cfg = OptimConfig(name="adamw", lr=0.1, warmup_iters=4, decay_norms=True)
    opt = build_optimizer({"net": net}, cfg)
    assert isinstance(opt, torch.optim.AdamW) and len(opt.param_groups) == 1  # norms decay too: one group
    sched = poly_scheduler(opt, 20, 0.9, warmup=4)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1 * WARMUP_START) and lrs[2] == pytest.approx(0.1 * 0.5 * poly_factor(2, 20, 0.9),
                                                                                    rel=1e-4)
    assert lrs[5] == pytest.approx(0.1 * poly_factor(5, 20, 0.9))
