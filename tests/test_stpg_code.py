"""STPG where the authors' code and the paper part ways: each choice on a case computed by hand from the
formulas (docs/stpg.md, "Paper, authors' code, and what reprokit does"), and the row that runs them all."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from reprokit.configure import load_config
from reprokit.methods.stpg import (MemoryBank, STPGParams, dual_contrastive_losses, match_anchors,
                                   mismatch_scores, select_pixels, update_prototypes)
from reprokit.methods.stpg_equations import random_prototypes
from tests.conftest import step_batches
from tests.stpg_reference import push
from tests.test_methods import _method

# 3 classes; the Gen-Teacher says class 0 twice, the Pro-Student 1 and 2
STUDENT, TEACHER = torch.tensor([1, 2]), torch.tensor([0, 0])


def test_minimal_case_code_scores_select_both_pixels():
    # +1 on the diagonal: M = [[1,0,0],[1,1,0],[1,0,1]] (rows: student). Class 0: row 1 (0 off), column 3
    # (2 off) -> 2/3; class 1: row 2 (1 off) -> 1/2, column 1 -> 0; class 2 likewise; sum 5/3
    scores = mismatch_scores(STUDENT, TEACHER, 3, prior_count=1, normalise=True)
    assert torch.allclose(scores, torch.tensor([0.4, 0.3, 0.3]))
    cons, hmis, lmis = select_pixels(STUDENT, TEACHER, scores)
    assert hmis.tolist() == [True, True] and not cons.any() and not lmis.any()


def test_minimal_case_eq5_as_printed_selects_neither():
    # M = [[0,0,0],[1,0,0],[1,0,0]]: every class scores 1 (class 0 through its column, 1 and 2 their rows)
    scores = mismatch_scores(STUDENT, TEACHER, 3)
    assert torch.equal(scores, torch.ones(3))
    assert not select_pixels(STUDENT, TEACHER, scores)[1].any()


def test_normalised_scores_sum_to_one_and_agreement_scores_zero():
    g = torch.Generator().manual_seed(4)
    s, t = torch.randint(0, 5, (2, 7, 7), generator=g), torch.randint(0, 5, (2, 7, 7), generator=g)
    assert mismatch_scores(s, t, 5, prior_count=1, normalise=True).sum() == pytest.approx(1.0, abs=1e-6)
    agree = mismatch_scores(s, s, 5, prior_count=1, normalise=True)
    assert torch.equal(agree, torch.zeros(5))  # nothing mismatched: no 0/0


def test_the_method_scores_as_its_setting_says(tiny_cfg):
    assert STPGParams().mismatch_score == "code"
    for form, expected in (("code", [0.4, 0.3, 0.3]), ("eq5", [1.0, 1.0, 1.0])):
        _, m = _method(tiny_cfg, mismatch_score=form)
        got = m.mismatch_scores(STUDENT, TEACHER, torch.ones(2, dtype=torch.bool))
        assert torch.allclose(got[:3], torch.tensor(expected)) and got[3:].abs().sum() == 0


def test_plain_eq13_shrinks_prototypes_and_the_unit_option_keeps_them_on_the_sphere():
    # a mean at right angles: 0.5 (1, 0) + 0.5 (0, 1) has length 0.707; renormalised it is (0.707, 0.707)
    proto, feat, label = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]]), torch.tensor([0])
    assert torch.allclose(update_prototypes(proto, feat, label, alpha=0.5), torch.tensor([[0.5, 0.5]]))
    assert torch.allclose(update_prototypes(proto, feat, label, alpha=0.5, unit=True),
                          torch.tensor([[0.5, 0.5]]) / 0.5 ** 0.5)
    turning = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [1.0, 0.0], [0.0, 1.0]])
    plain, unit = proto, proto
    for f in turning:
        plain = update_prototypes(plain, f[None], label, alpha=0.5)
        unit = update_prototypes(unit, f[None], label, alpha=0.5, unit=True)
    assert plain.norm() < 0.8 and unit.norm() == pytest.approx(1.0)


def test_euclidean_and_cosine_matching_pick_different_anchors():
    # p0 = a0; p1 = (0.3, -0.8, z) unit. Cosine sums: identity 1 - 0.8 = 0.2 < swap 0 + 0.3 -> swap.
    # Distance sums: identity 0 + sqrt(3.6) = 1.90 < swap sqrt(2) + sqrt(1.4) = 2.60 -> identity.
    anchors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    protos = torch.tensor([[1.0, 0.0, 0.0], [0.3, -0.8, 0.27 ** 0.5]])
    assert match_anchors(protos, anchors).tolist() == [0, 1]
    assert match_anchors(protos, anchors, "cosine").tolist() == [1, 0]


def test_random_starting_prototypes_are_unit_and_repeat():
    a = random_prototypes(5, 8, seed=3)
    assert torch.allclose(a.norm(dim=1), torch.ones(5)) and torch.equal(a, random_prototypes(5, 8, seed=3))


def _contrastive_case():
    """Two labeled rows and two unlabeled rows of 4 features in 2-D; 3 classes, anchors e0, e1, (-1,-1)/sqrt2."""
    g = torch.Generator().manual_seed(6)
    proj = torch.randn(4, 2, 4, generator=g)
    labels = torch.tensor([[0, 0, 1, 255], [0, 2, 2, 2],    # labeled set: class 1 once
                           [1, 1, 2, 0], [255, 255, 1, 2]])  # unlabeled set: class 0 once
    anchors = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]), dim=1)
    bank = MemoryBank(3, 4, 2)
    push(bank, 0, torch.tensor([[1.0, 1.0], [2.0, 0.0]]))
    push(bank, 1, torch.tensor([[0.0, 1.0]]))  # one entry: no similarity term with the code's skips
    push(bank, 2, torch.tensor([[-1.0, 0.0], [0.0, -1.0], [-1.0, -1.0]]))
    return proj, labels, anchors, bank


def _terms(proj, labels, anchors, bank, tau=0.5):
    """Per feature: (set, class, anchor CE, 1 - cos to the class's memory entries' mean, entries in memory)."""
    centres, count = bank.centres()
    out = []
    for r in range(labels.shape[0]):
        for i in range(labels.shape[1]):
            c = int(labels[r, i])
            if c == 255:
                continue
            f = F.normalize(proj[r, :, i], dim=0)
            ce = -F.log_softmax(anchors @ f / tau, 0)[c]
            out.append((int(r >= 2), c, float(ce), float(1 - centres[c] @ f), int(count[c])))
    return out


def test_code_edge_cases_leave_out_lone_features_and_single_entry_memories():
    proj, labels, anchors, bank = _contrastive_case()
    terms = _terms(proj, labels, anchors, bank)
    count = {}
    for s, c, *_ in terms:
        count[s, c] = count.get((s, c), 0) + 1
    kept = [t for t in terms if count[t[0], t[1]] >= 2]
    with_memory = [t for t in kept if t[4] >= 2]
    ac, sim = dual_contrastive_losses(proj, labels, anchors, *bank.centres(), tau=0.5, first_set=2, min_count=2)
    assert len(kept) == len(terms) - 2 and len(with_memory) < len(kept)
    assert ac.item() == pytest.approx(sum(t[2] for t in kept) / len(kept), abs=1e-5)
    assert sim.item() == pytest.approx(sum(t[3] for t in with_memory) / len(with_memory), abs=1e-5)
    ac_all, sim_all = dual_contrastive_losses(proj, labels, anchors, *bank.centres(), tau=0.5, first_set=2)
    assert ac_all.item() == pytest.approx(sum(t[2] for t in terms) / len(terms), abs=1e-5)
    assert ac_all.item() != pytest.approx(ac.item(), abs=1e-4)


def test_code_reduction_averages_per_set_and_class_and_divides_by_the_classes():
    proj, labels, anchors, bank = _contrastive_case()
    terms = _terms(proj, labels, anchors, bank)
    cells = {}
    for s, c, ce, dis, entries in terms:
        cells.setdefault((s, c), []).append((ce, dis, entries))
    ac_want = sum(sum(x[0] for x in v) / len(v) for v in cells.values() if len(v) >= 2) / 3
    sim_want = sum(sum(x[1] for x in v) / len(v) for v in cells.values() if len(v) >= 2 and v[0][2] >= 2) / 3
    ac, sim = dual_contrastive_losses(proj, labels, anchors, *bank.centres(), tau=0.5, first_set=2, min_count=2,
                                      reduction="class")
    assert ac.item() == pytest.approx(ac_want, abs=1e-5) and sim.item() == pytest.approx(sim_want, abs=1e-5)


def test_code_row_sets_every_code_choice_and_trains(tiny_cfg, tmp_path):
    row = yaml.safe_load(open("params/rows/code/stpg.yaml"))["method"]
    assert {"mismatch_score": "code", "prototype_unit": True, "prototype_source": "bank_teacher",
            "anchor_matching": "cosine", "contrastive_skips": True, "contrastive_reduction": "class",
            "bank_teacher": "pro", "alpha": 0.9}.items() <= row.items()
    for base in ("params/digits/base.yaml", "params/voc/base.yaml", "params/cityscapes/base.yaml"):
        cell = tmp_path / "cell.yaml"
        cell.write_text(yaml.safe_dump({"_base_": [str(Path(p).resolve()) for p in (base, "params/rows/code/stpg.yaml")]}))
        assert load_config(cell).method.prototype_source == "bank_teacher"
    # a step of the code row on the tiny scenes: prototypes stay unit length once the bank phase updates them
    cfg, m = _method(tiny_cfg, **{**row, "bank_start": 0.0, "contrastive_start": 0.0, "proximity_start": 0.3})
    labeled, unlabeled = step_batches(cfg)
    start = m.prototypes.clone()
    out = m.training_step(labeled, unlabeled, step=1)
    assert {"ac", "sim"} <= set(out.losses) and all(torch.isfinite(v) for v in out.losses.values())
    assert torch.allclose(m.prototypes.norm(dim=1), torch.ones(len(start)), atol=1e-5)
