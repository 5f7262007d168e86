"""The teacher-student methods behind the contract: STPG wiring and switches, Mean Teacher, FixMatch."""
import pytest
import torch

from reprokit.config import ConfigError
from reprokit.methods import build_method
from reprokit.methods.semi import teacher_targets
from reprokit.methods.stpg import weighted_ce
from tests.conftest import crash_and_rerun, step_batches, tiny_raw

STPG_TINY = {"name": "stpg", "proj_dim": 16, "bank_size": 8, "phi": 0.0, "bank_start": 0.0,
             "contrastive_start": 0.0, "proximity_start": 0.3}


def _method(tiny_cfg, **method):
    torch.manual_seed(0)
    cfg = tiny_cfg(method={**STPG_TINY, **method})
    m = build_method(cfg, cfg.data.num_classes)
    m.set_total_steps(10)
    return cfg, m


def test_professional_and_general_modules_use_the_crossed_teachers(tiny_cfg):
    """With every pixel selected, L_u^Pro is Eq. 7 of the Pro-Student against all Gen-Teacher labels and
    L_u^Gen is Eq. 11 of the Gen-Student against the Pro-Teacher: computed here directly from the networks."""
    cfg, m = _method(tiny_cfg, pixel_selection=["cons", "hmis", "lmis"], contrastive=False)
    m.eval()  # BN running statistics and no dropout: the networks are deterministic functions
    labeled, unlabeled = step_batches(cfg)
    out = m.training_step(labeled, unlabeled, step=3)
    views = m.views(unlabeled, 3)
    with torch.no_grad():
        gen_conf, gen_label = teacher_targets(m.gen_teacher(views.x_w).softmax(1), views)
        pro_conf, pro_label = teacher_targets(m.pro_teacher(views.x_w).softmax(1), views)
        want_pro = weighted_ce(m.pro_student(views.x_s), gen_label, gen_conf)
        want_gen = weighted_ce(m.gen_student(views.x_s), pro_label, pro_conf)
    assert torch.allclose(out.losses["pro"], want_pro, atol=1e-6)
    assert torch.allclose(out.losses["gen"], want_gen, atol=1e-6)
    assert set(out.losses) == {"sup_gen", "sup_pro", "pro", "gen"}


def test_selection_diagnostics_partition_and_accuracy(tiny_cfg):
    cfg, m = _method(tiny_cfg)
    labeled, unlabeled = step_batches(cfg)
    d = m.training_step(labeled, unlabeled, step=0).diagnostics
    assert float(d["sel/cons"] + d["sel/hmis"] + d["sel/lmis"]) == pytest.approx(1.0, abs=1e-6)
    assert len([k for k in d if k.startswith("mismatch/")]) == cfg.data.num_classes
    for key in ("acc/gen_teacher", "acc/pro_teacher"):  # hidden ground truth of the digit scenes
        assert 0 <= float(d[key]) <= 1


def test_pixel_selection_subset_changes_the_professional_loss(tiny_cfg):
    losses = {}
    for subset in (["cons"], ["cons", "hmis"], ["cons", "hmis", "lmis"]):
        cfg, m = _method(tiny_cfg, pixel_selection=subset, contrastive=False)
        m.eval()
        labeled, unlabeled = step_batches(cfg)
        losses[len(subset)] = m.training_step(labeled, unlabeled, step=0).losses["pro"].item()
    # the selection only adds non-negative terms over a fixed denominator
    assert losses[1] <= losses[2] <= losses[3]
    assert losses[1] < losses[3]


def test_switches_build_the_ablation_rows(tiny_cfg):
    _, single = _method(tiny_cfg, dual_teacher=False)
    assert set(single.students()) == {"gen_student"} and len(single.ema_pairs()) == 1
    _, no_bank = _method(tiny_cfg, bank_size=0)
    assert not no_bank.use_contrastive and not hasattr(no_bank, "bank")
    cfg, m = _method(tiny_cfg, lambda_u=0.0)
    labeled, unlabeled = step_batches(cfg)
    out = m.training_step(labeled, unlabeled, step=0)
    assert out.losses["pro"].item() == 0 and out.losses["gen"].item() == 0
    assert {"ac", "sim"} <= set(out.losses)


@pytest.mark.parametrize("method, key", [({"pixel_selection": ["cons", "typo"]}, "method.pixel_selection"),
                                         ({"bank_teacher": "both"}, "method.bank_teacher"),
                                         ({"bank_start": 2.0}, "method.bank_start")])
def test_bad_switches_name_the_key(tiny_cfg, method, key):
    with pytest.raises(ConfigError, match=key):
        _method(tiny_cfg, **method)


def test_teachers_stay_in_eval_mode(tiny_cfg):
    _, m = _method(tiny_cfg)
    m.train()
    assert m.gen_student.training and m.pro_student.training
    assert not m.gen_teacher.training and not m.pro_teacher.training
    assert all(not p.requires_grad for p in m.gen_teacher.parameters())


def test_pseudo_labels_for_the_inspector(tiny_cfg):
    cfg, m = _method(tiny_cfg)
    m.eval()
    _, unlabeled = step_batches(cfg)
    maps = m.pseudo_labels(unlabeled)
    shape = unlabeled["image"].shape[:1] + unlabeled["image"].shape[-2:]
    assert maps["teacher_label"].shape == maps["category"].shape == shape
    agree = maps["teacher_label"] == maps["student_pred"]
    assert torch.equal(maps["category"] == 0, agree)
    assert maps["scores"].shape == (cfg.data.num_classes,)


def test_fixmatch_threshold_bounds_the_unsupervised_loss(tiny_cfg):
    for threshold, positive in ((0.0, True), (1.0, False)):
        torch.manual_seed(0)
        cfg = tiny_cfg(method={"name": "fixmatch", "threshold": threshold})
        m = build_method(cfg, cfg.data.num_classes)
        labeled, unlabeled = step_batches(cfg)
        out = m.training_step(labeled, unlabeled, step=0)
        assert (out.losses["unsup"].item() > 0) == positive
        assert float(out.diagnostics["kept"]) == (1.0 if positive else 0.0)


def test_mean_teacher_step(tiny_cfg):
    torch.manual_seed(0)
    cfg = tiny_cfg(method={"name": "mean_teacher"})
    m = build_method(cfg, cfg.data.num_classes)
    labeled, unlabeled = step_batches(cfg)
    out = m.training_step(labeled, unlabeled, step=0)
    assert set(out.losses) == {"sup", "unsup"} and all(torch.isfinite(v) for v in out.losses.values())
    assert 0 <= float(out.diagnostics["acc/teacher"]) <= 1


def test_stpg_run_logs_diagnostics_and_resumes_exactly(digits_root, tmp_path, monkeypatch):
    """A crash after step 5 (checkpoint at 4) and a rerun end with the same weights, memory bank and
    prototypes as an uninterrupted run."""
    raw = tiny_raw(digits_root, method={**STPG_TINY, "ema_momentum": 0.5}, optim={"lr": 0.05},
                   train={"iters": 8, "ckpt_every": 2, "log_every": 1})
    a, b, records = crash_and_rerun(raw, tmp_path, monkeypatch)
    assert any(k.startswith("bank.") for k in a) and "prototypes" in a
    assert int(a["bank.count"].sum()) > 0 and a["prototypes"].abs().sum() > 0
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert [r["step"] for r in records] == list(range(1, 9))
    last = records[-1]
    assert all(torch.isfinite(torch.tensor(last[k])) for k in last if k.startswith("loss"))
    assert {"diag/sel/cons", "diag/sel/hmis", "diag/sel/lmis", "diag/acc/hmis", "diag/mismatch/0",
            "loss/ac", "loss/sim", "diag/bank_fill"} <= set(last)


def test_unsup_start_delays_the_unsupervised_loss(tiny_cfg):
    torch.manual_seed(0)
    cfg = tiny_cfg(method={"name": "mean_teacher", "unsup_start": 0.5})
    m = build_method(cfg, cfg.data.num_classes)
    m.set_total_steps(10)
    labeled, unlabeled = step_batches(cfg)
    assert set(m.training_step(labeled, unlabeled, step=4).losses) == {"sup"}  # burn-in: no unlabeled pass
    assert m.training_step(labeled, unlabeled, step=5).losses["unsup"].item() > 0
