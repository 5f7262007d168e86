import itertools

import pytest
import torch
import torch.nn.functional as F

from reprokit.methods.stpg import (MemoryBank, anchor_contrastive_loss, anchor_uniformity_loss,
                                   dual_contrastive_losses, make_anchors, match_anchors, mismatch_scores,
                                   pixel_cosines, select_pixels, similarity_loss, similarity_term, update_prototypes,
                                   weighted_ce)
from tests.stpg_reference import push, queue, queues

# student (rows) / teacher (columns) on 8 pixels, 3 classes
S = torch.tensor([0, 0, 0, 1, 1, 2, 2, 0])
T = torch.tensor([0, 0, 1, 1, 2, 2, 0, 0])


def test_mismatch_scores_by_hand():
    # M = [[3,1,0],[0,1,1],[1,0,1]]; rows 4,2,2; cols 4,2,2
    expected = torch.tensor([1 / 4 + 1 / 4, 1 / 2 + 1 / 2, 1 / 2 + 1 / 2])
    assert torch.allclose(mismatch_scores(S, T, 3), expected)


def test_mismatch_scores_zero_denominator_valid_mask_and_symmetry():
    scores = mismatch_scores(torch.tensor([0, 0]), torch.tensor([0, 1]), 4)
    # class 0: row 2 (1 off) -> 1/2, col 1 (0 off) -> 0 ; class 1: row empty -> 0, col 1 (1 off) -> 1
    assert torch.allclose(scores, torch.tensor([0.5, 1.0, 0.0, 0.0]))
    valid = torch.tensor([True, True, True, True, True, True, False, True])
    assert torch.allclose(mismatch_scores(S, T, 3, valid), mismatch_scores(S[valid], T[valid], 3))
    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, 5, (4, 9, 9), generator=g), torch.randint(0, 5, (4, 9, 9), generator=g)
    assert torch.allclose(mismatch_scores(a, b, 5), mismatch_scores(b, a, 5))


def test_select_pixels_by_hand_and_partition():
    scores = torch.tensor([0.5, 1.0, 0.8])
    cons, hmis, lmis = select_pixels(S, T, scores)
    assert cons.tolist() == [True, True, False, True, False, True, False, True]
    # pixel 2: s=0,t=1 -> I1 > I0 -> hmis ; pixel 4: s=1,t=2 -> 0.8 < 1.0 -> lmis ; pixel 6: s=2,t=0 -> lmis
    assert hmis.tolist() == [False, False, True, False, False, False, False, False]
    assert lmis.tolist() == [False, False, False, False, True, False, True, False]
    g = torch.Generator().manual_seed(1)
    s, t = torch.randint(0, 6, (2, 16, 16), generator=g), torch.randint(0, 6, (2, 16, 16), generator=g)
    parts = torch.stack(select_pixels(s, t, torch.rand(6, generator=g))).int()
    assert (parts.sum(0) == 1).all()


def test_weighted_ce_keeps_zero_weight_pixels_in_denominator():
    logits = torch.tensor([[[[2.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]]]])  # [1, 2 classes, 1, 3 pixels]
    target = torch.tensor([[[0, 1, 255]]])
    weight = torch.tensor([[[0.5, 0.0, 1.0]]])
    ce0 = -F.log_softmax(torch.tensor([2.0, 0.0]), 0)[0]
    assert torch.allclose(weighted_ce(logits, target, weight), 0.5 * ce0 / 2)


def test_anchor_uniformity_loss_by_hand():
    v = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    expected = torch.log(torch.exp(torch.tensor(2.0)) + torch.exp(torch.tensor(-2.0)))
    assert torch.allclose(anchor_uniformity_loss(v, 0.5), expected)


@pytest.mark.parametrize("c,d", [(4, 3), (11, 16), (21, 32)])
def test_make_anchors_is_a_regular_simplex(c, d):
    a = make_anchors(c, d, seed=3, steps=1500)
    assert torch.allclose(a.norm(dim=1), torch.ones(c), atol=1e-5)
    off = (a @ a.T)[~torch.eye(c, dtype=torch.bool)]
    assert (off + 1 / (c - 1)).abs().max() < 0.01
    assert torch.equal(a, make_anchors(c, d, seed=3, steps=1500))


def test_update_prototypes_eq13():
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    feats = torch.tensor([[0.0, 2.0], [0.0, 5.0], [3.0, 0.0]])
    labels = torch.tensor([0, 0, 2])
    out = update_prototypes(protos, feats, labels, alpha=0.9)
    assert torch.allclose(out[0], torch.tensor([0.9, 0.1]))  # mean of normalised features = (0, 1)
    assert torch.equal(out[1], protos[1])  # absent class unchanged
    assert torch.allclose(out[2], torch.tensor([1.0, 0.0]))  # empty prototype takes the batch mean


def test_match_anchors_is_optimal_against_brute_force():
    g = torch.Generator().manual_seed(0)
    for c in range(2, 7):
        protos, anchors = torch.randn(c, 5, generator=g), torch.randn(c, 5, generator=g)
        sigma = match_anchors(protos, anchors)
        cost = lambda perm: sum(float((anchors[perm[i]] - protos[i]).norm()) for i in range(c))  # noqa: E731
        best = min(cost(p) for p in itertools.permutations(range(c)))
        assert sorted(sigma.tolist()) == list(range(c)) and cost(sigma.tolist()) == pytest.approx(best)
    assert match_anchors(torch.eye(3)[[2, 0, 1]], torch.eye(3)).tolist() == [2, 0, 1]


def test_anchor_contrastive_loss_eq15_by_hand():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    sigma = torch.tensor([1, 0])  # class 0 -> anchor 1
    f = torch.tensor([[0.0, 3.0], [1.0, 1.0]])
    labels = torch.tensor([0, 255])
    expected = -torch.log(torch.exp(torch.tensor(2.0)) / (torch.exp(torch.tensor(2.0)) + 1))
    assert torch.allclose(anchor_contrastive_loss(f, labels, anchors, sigma, tau=0.5), expected)


def test_similarity_loss_eq16_by_hand():
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 1])
    memory = [torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.zeros(0, 2)]
    assert torch.allclose(similarity_loss(f, labels, memory), torch.tensor(0.5))  # only class 0 counts
    assert similarity_loss(f, labels, [torch.zeros(0, 2)] * 2) == 0
    assert torch.allclose(similarity_loss(f, torch.tensor([0, 255]), memory), torch.tensor(0.5))  # ignore left out


def test_similarity_loss_equals_the_pairwise_definition():
    g = torch.Generator().manual_seed(0)
    f, labels = torch.randn(50, 8, generator=g), torch.randint(0, 4, (50,), generator=g)
    memory = [torch.randn(n, 8, generator=g) for n in (5, 0, 3, 7)]
    pairwise = [1 - F.cosine_similarity(f[i][None], memory[int(c)]).mean()
                for i, c in enumerate(labels) if len(memory[int(c)])]
    assert torch.allclose(similarity_loss(f, labels, memory), torch.stack(pairwise).mean(), atol=1e-6)


def test_memory_bank_fifo_and_admission():
    bank = MemoryBank(num_classes=2, size=3, dim=1)
    push(bank, 0, torch.tensor([[1.0], [2.0]]))
    push(bank, 0, torch.tensor([[3.0], [4.0]]))
    assert queue(bank, 0).flatten().tolist() == [2.0, 3.0, 4.0] and len(queue(bank, 1)) == 0
    push(bank, 0, torch.tensor([[5.0], [6.0], [7.0], [8.0]]))
    assert queue(bank, 0).flatten().tolist() == [6.0, 7.0, 8.0]
    b2 = MemoryBank(2, 4, 2)
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [1.0, 0.1], [1.0, 0.2]])
    labels = torch.tensor([0, 0, 0, 0, 1])
    pred = torch.tensor([0, 0, 0, 1, 1])
    conf = torch.tensor([0.99, 0.99, 0.99, 0.99, 0.5])
    b2.admit(feats, labels, pred, conf, phi=0.95, top_k=2, anchors=torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert torch.allclose(queue(b2, 0), torch.tensor([[1.0, 0.0], [0.7, 0.7]])) and len(queue(b2, 1)) == 0
    state = b2.state_dict()
    b3 = MemoryBank(2, 4, 2)
    b3.load_state_dict(state)
    assert torch.equal(queue(b3, 0), queue(b2, 0))


def test_bank_centres_match_the_entries():
    bank = MemoryBank(num_classes=3, size=4, dim=2)
    push(bank, 0, torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
    push(bank, 2, torch.tensor([[2.0, 0.0]] * 6))  # wraps around the ring
    centres, count = bank.centres()
    filled = count > 0
    assert count.tolist() == [2, 0, 4]
    assert torch.allclose(centres[0], torch.tensor([0.5, 0.5])) and torch.allclose(centres[2], torch.tensor([1.0, 0.0]))
    f, labels = torch.randn(20, 2), torch.randint(0, 3, (20,))
    from_centres = similarity_term(pixel_cosines(f.T[None], centres), labels[None], filled)
    assert torch.allclose(from_centres, similarity_loss(f, labels, queues(bank)))


def test_dual_contrastive_losses_equal_eqs_15_and_16_on_pixel_rows():
    """The step's fused form on [B, D, P] projections gives the public functions' values on the same pixels."""
    g = torch.Generator().manual_seed(1)
    proj, labels = torch.randn(2, 8, 5, generator=g), torch.randint(0, 3, (2, 5), generator=g)
    labels[0, 0] = 255
    anchors, sigma = F.normalize(torch.randn(3, 8, generator=g), dim=1), torch.tensor([2, 0, 1])
    bank = MemoryBank(num_classes=3, size=4, dim=8)
    push(bank, 0, torch.randn(3, 8, generator=g))
    push(bank, 2, torch.randn(6, 8, generator=g))
    ac, sim = dual_contrastive_losses(proj, labels, anchors[sigma], *bank.centres(), tau=0.5)
    rows, flat = proj.permute(0, 2, 1).reshape(-1, 8), labels.reshape(-1)
    assert torch.allclose(ac, anchor_contrastive_loss(rows, flat, anchors, sigma, tau=0.5), atol=1e-6)
    assert torch.allclose(sim, similarity_loss(rows, flat, queues(bank)), atol=1e-6)


def test_pixel_cosines_are_cosines():
    g = torch.Generator().manual_seed(2)
    feats, dirs = torch.randn(3, 6, 4, generator=g), F.normalize(torch.randn(5, 6, generator=g), dim=1)
    expected = torch.einsum("kd,bdp->bkp", dirs, F.normalize(feats, dim=1))
    assert torch.allclose(pixel_cosines(feats, dirs), expected, atol=1e-6)
    assert pixel_cosines(torch.zeros(1, 6, 2), dirs).abs().sum() == 0  # a zero feature: no NaN, as F.normalize


def per_class_reference(features, labels, pred, conf, phi, top_k, anchors):
    """What the bank should hold per class after one admission into an empty bank, one class at a time."""
    eligible = (pred == labels) & (conf > phi)
    held = []
    for c in range(anchors.shape[0]):
        f = features[eligible & (labels == c)]
        closeness = F.normalize(f, dim=1) @ F.normalize(anchors[c], dim=0)
        held.append(f[closeness.argsort(descending=True)][:top_k])
    return held


def test_bank_admission_of_all_classes_at_once_matches_one_class_at_a_time():
    g = torch.Generator().manual_seed(3)
    feats, labels = torch.randn(200, 5, generator=g), torch.randint(0, 4, (200,), generator=g)
    pred = torch.where(torch.rand(200, generator=g) < 0.8, labels, (labels + 1) % 4)
    conf, anchors = torch.rand(200, generator=g), F.normalize(torch.randn(4, 5, generator=g), dim=1)
    labels[:10] = 255
    bank = MemoryBank(num_classes=4, size=16, dim=5)
    bank.admit(feats, labels, pred, conf, phi=0.5, top_k=6, anchors=anchors)
    for c, expected in enumerate(per_class_reference(feats, labels, pred, conf, 0.5, 6, anchors)):
        assert len(expected) == 6 and torch.equal(queue(bank, c), expected)
    bank.admit(feats, labels, pred, conf, phi=0.5, top_k=12, anchors=anchors)  # wraps: 6 + 12 > 16
    assert bank.count.tolist() == [16] * 4 and bank.ptr.tolist() == [2] * 4
    assert torch.equal(queue(bank, 0)[-12:], per_class_reference(feats, labels, pred, conf, 0.5, 12, anchors)[0])


def test_bank_admission_without_anchors_takes_the_first_eligible_pixels():
    bank = MemoryBank(num_classes=2, size=4, dim=1)
    feats = torch.arange(1.0, 7.0)[:, None]
    labels, pred = torch.tensor([1, 0, 1, 1, 1, 0]), torch.tensor([1, 1, 1, 1, 1, 0])
    bank.admit(feats, labels, pred, torch.ones(6), phi=0.5, top_k=2)
    assert queue(bank, 1).flatten().tolist() == [1.0, 3.0] and queue(bank, 0).flatten().tolist() == [6.0]
    assert torch.allclose(bank.centres()[0], torch.tensor([[1.0], [1.0]]))
