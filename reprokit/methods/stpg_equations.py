"""STPG (Hong et al., "Semi-Supervised Semantic Segmentation with Professional and General Training"):
the paper's equations as small pure functions, and the class-wise FIFO memory bank. The method that
assembles them is :mod:`reprokit.methods.stpg`, which also re-exports them; the confidence-weighted CE of
Eqs. 7 and 11 is shared with Mean Teacher and lives in :mod:`reprokit.methods.losses`.

Equation numbers refer to Section 3 of the paper. Where the paper leaves a detail open, the docstring
says which choice is made here (see docs/stpg.md for paper vs authors' code vs reprokit).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from reprokit.labels import IGNORE_INDEX


#: Eq. 6's pixel categories in the order of :func:`select_pixels` (and of the inspector's category ids 0, 1, 2):
#: short name (``method.pixel_selection``, diagnostics ``sel/<name>`` and ``acc/<name>``) -> name shown to people
SELECTION_CATEGORIES = {"cons": "consistent", "hmis": "highly mismatched", "lmis": "low mismatched"}


def mismatch_scores(student_pred: torch.Tensor, teacher_pred: torch.Tensor, num_classes: int,
                    valid: torch.Tensor | None = None, prior_count: int = 0, normalise: bool = False) -> torch.Tensor:
    """Class-level mismatch scores I (Eq. 5) from the confusion matrix M of the two predictions.

    ``M[p, q]`` counts pixels where the student (Pro-Student) predicts p and the teacher (Gen-Teacher)
    predicts q. ``I_q = (row_q - m_qq) / row_q + (col_q - m_qq) / col_q``; a term whose denominator
    is 0 counts as 0. Pixels where ``valid`` is False are left out.

    The authors' code differs where the paper is silent: it adds ``prior_count = 1`` agreeing pixel of every
    class to M before the ratios (so a class seen once, and wrongly, no longer scores as high as a class
    missed many times) and ``normalise``s the scores to sum 1 (a sum of 0, nothing mismatched, stays 0).
    The normalisation alone leaves Eq. 6's selection as it is; the added counts change it on small batches.

    Free of host synchronisation, so it can run every step on a GPU without stalling it: left-out pixels
    go to a spare bin rather than being dropped by boolean indexing (which needs their count on the host),
    and the counts come from ``scatter_add_`` into a fixed-size vector (CUDA's ``bincount`` reads the
    input's maximum back to size its output).
    """
    cells = num_classes * num_classes
    idx = student_pred.reshape(-1).long() * num_classes + teacher_pred.reshape(-1).long()
    if valid is not None:
        idx = torch.where(valid.reshape(-1).bool(), idx, cells)
    m = torch.zeros(cells + 1, dtype=torch.long, device=idx.device)
    m = m.scatter_add_(0, idx, idx.new_ones(1).expand_as(idx))[:cells]
    m = m.reshape(num_classes, num_classes).double()
    if prior_count:
        m = m + prior_count * torch.eye(num_classes, dtype=m.dtype, device=m.device)
    diag, rows, cols = m.diagonal(), m.sum(1), m.sum(0)
    row_term = torch.where(rows > 0, (rows - diag) / rows.clamp(min=1), torch.zeros_like(rows))
    col_term = torch.where(cols > 0, (cols - diag) / cols.clamp(min=1), torch.zeros_like(cols))
    scores = row_term + col_term
    if normalise:
        total = scores.sum()
        scores = torch.where(total > 0, scores / total.clamp(min=torch.finfo(scores.dtype).tiny), scores)
    return scores.float()


def select_pixels(student_pred: torch.Tensor, teacher_pred: torch.Tensor, scores: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel selection (Eq. 6): (consistent, highly mismatched, low mismatched) boolean maps.

    Consistent: both predict the same class. Highly mismatched: they differ and the teacher's class has
    the larger mismatch score, ``scores[teacher] > scores[student]``. Low mismatched: every other pixel.
    The three are mutually exclusive and cover every pixel.
    """
    cons = student_pred == teacher_pred
    hmis = ~cons & (scores[teacher_pred.long()] > scores[student_pred.long()])
    lmis = ~cons & ~hmis
    return cons, hmis, lmis


def anchor_uniformity_loss(anchors: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 12: ``(1/C) sum_i log sum_j exp(v_i . v_j / tau)`` (j runs over all anchors, i included)."""
    return torch.logsumexp(anchors @ anchors.T / tau, dim=1).mean()


def make_anchors(num_classes: int, dim: int, tau: float = 0.5, seed: int = 0, steps: int = 3000) -> torch.Tensor:
    """Fixed class anchors: random unit vectors optimised with Eq. 12 on the unit sphere.

    For ``dim >= C - 1`` the optimum is a regular simplex (pairwise cosine -1/(C-1)); Adam on the
    unnormalised vectors with re-projection reaches it to well within 0.01.
    """
    g = torch.Generator().manual_seed(seed)
    raw = nn.Parameter(torch.randn(num_classes, dim, generator=g, dtype=torch.float64))
    opt = torch.optim.Adam([raw], lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        opt.zero_grad()
        anchor_uniformity_loss(F.normalize(raw, dim=1), tau).backward()
        opt.step()
        sched.step()
    return F.normalize(raw.detach(), dim=1).float()


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean of L2-normalised features [N, D], itself normalised; and which classes occur (STPG's
    prototypes and FARCLUSS's centroids; differentiable). Labels outside
    the classes go to a spare row instead of being indexed out, so nothing waits on the host."""
    known = (labels >= 0) & (labels < num_classes)
    y = torch.where(known, labels, num_classes).long()
    f = F.normalize(features.float(), dim=1)
    sums = f.new_zeros(num_classes + 1, f.shape[1]).index_add_(0, y, f)[:num_classes]
    counts = f.new_zeros(num_classes + 1).index_add_(0, y, f.new_ones(1).expand(len(y)))[:num_classes]
    return F.normalize(sums, dim=1), counts > 0


def update_prototypes(prototypes: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
                      alpha: float = 0.99, unit: bool = False) -> torch.Tensor:
    """Eq. 13: ``c_i <- alpha c_i + (1 - alpha) mean_i`` for each class i present in ``labels``.

    ``mean_i`` is the normalised mean of the class's L2-normalised features. Classes absent from
    ``labels`` (or labelled outside the classes, e.g. 255) are unchanged; a class whose prototype is still all
    zeros takes ``mean_i`` directly (the EMA would otherwise start from the origin). ``unit`` renormalises the
    updated prototype to length 1, as the authors' code does: the plain EMA of unit vectors shrinks towards
    the origin when the means turn, and Eq. 14's Euclidean matching then weighs prototypes by their length.
    """
    means, present = class_means(features, labels, prototypes.shape[0])
    fresh = prototypes.abs().sum(1) == 0
    updated = torch.where(fresh[:, None], means, alpha * prototypes + (1 - alpha) * means)
    if unit:
        updated = F.normalize(updated, dim=1)
    return torch.where(present[:, None], updated.to(prototypes.dtype), prototypes)


def random_prototypes(num_classes: int, dim: int, seed: int) -> torch.Tensor:
    """Random unit vectors, the authors' code's starting prototypes (drawn from ``seed``, so runs repeat)."""
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(num_classes, dim, generator=g), dim=1)


MATCHING_COSTS = ("euclidean", "cosine")


def match_anchors(prototypes: torch.Tensor, anchors: torch.Tensor, cost: str = "euclidean") -> torch.Tensor:
    """Eq. 14: the permutation sigma minimising ``sum_i ||anchors[sigma[i]] - prototypes[i]||``
    (Hungarian algorithm, scipy's linear_sum_assignment); ``sigma[i]`` is the anchor of class i.

    ``cost="cosine"`` maximises ``sum_i cos(anchors[sigma[i]], prototypes[i])`` instead, as the authors' code
    does. The two can pick different permutations even for unit prototypes: a sum of distances
    ``sqrt(2 - 2 cos)`` is not a monotone function of the sum of cosines.
    """
    p, a = prototypes.double().cpu(), anchors.double().cpu()
    costs = torch.cdist(p, a) if cost == "euclidean" else -(F.normalize(p, dim=1) @ F.normalize(a, dim=1).T)
    rows, cols = linear_sum_assignment(costs.numpy())
    sigma = torch.empty(len(rows), dtype=torch.long)
    sigma[torch.as_tensor(rows)] = torch.as_tensor(cols)
    return sigma.to(prototypes.device)


def pixel_cosines(features: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """``directions . f / ||f||`` for features ``[B, D, P]`` (any norm) and directions ``[K, D]``: ``[B, K, P]``.

    With unit directions these are the cosines of Eqs. 15 and 16. Dividing the K dot products by the
    feature norm gives the same values as normalising the D-dimensional features first (``F.normalize``'s
    eps included) but spares a pass over the [B, D, P] tensor and its backward, and keeps the projection
    head's [B, D, h, w] layout (no transposed copy).
    """
    dots = torch.matmul(directions.to(features.dtype), features)
    return dots / torch.linalg.vector_norm(features, dim=1, keepdim=True).clamp_min(1e-12)


def _masked_mean(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean over ``keep`` without boolean indexing (no host sync, no gather/scatter); 0 when nothing is kept."""
    keep = keep.to(values.dtype)
    return (values * keep).sum() / keep.sum().clamp(min=1)


def anchor_contrastive_term(cos_anchor: torch.Tensor, labels: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 15 from the cosines ``[B, C, P]`` of each feature to each class's assigned anchor and labels
    ``[B, P]``: ``-log softmax_c(cos / tau)`` at the feature's class, averaged over non-ignored features."""
    total = F.cross_entropy(cos_anchor / tau, labels.long(), ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (labels != IGNORE_INDEX).sum().clamp(min=1)


def similarity_term(cos_centre: torch.Tensor, labels: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """Eq. 16 from the cosine-numerators ``[B, C, P]`` of each feature against each class's mean normalised
    memory entry: ``1 - cos`` at the feature's class, averaged over features whose class has entries."""
    num_classes = cos_centre.shape[1]
    known = (labels >= 0) & (labels < num_classes)
    idx = torch.where(known, labels, 0).long()
    own = cos_centre.gather(1, idx[:, None])[:, 0]
    return _masked_mean(1 - own, known & filled[idx])


def anchor_contrastive_loss(features: torch.Tensor, labels: torch.Tensor, anchors: torch.Tensor,
                            assignment: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """Eq. 15 over features [N, D]: ``-log softmax_c(f . v_sigma(c) / tau)`` at the feature's class, f
    normalised; features labelled 255 left out. The public form; the training step computes Eqs. 15 and 16
    at once on [B, D, P] projections (:func:`dual_contrastive_losses`)."""
    return anchor_contrastive_term(pixel_cosines(features.T[None], anchors[assignment]), labels[None], tau)


def similarity_loss(features: torch.Tensor, labels: torch.Tensor, memory: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 16 over features [N, D] from each class's memory entries [M_c, D]: the mean of ``1 - cos(f, i+)``
    over the class's entries equals ``1 -`` the cosine against their mean normalised entry; classes without
    entries contribute nothing."""
    centres = torch.stack([F.normalize(m.to(features.dtype), dim=1).mean(0) if len(m)
                           else features.new_zeros(features.shape[1]) for m in memory])
    filled = torch.tensor([len(m) > 0 for m in memory], device=features.device)
    return similarity_term(pixel_cosines(features.T[None], centres), labels[None], filled)


CONTRASTIVE_REDUCTIONS = ("feature", "class")


def _set_class_cells(labels: torch.Tensor, first_set: int | None, num_classes: int) -> torch.Tensor:
    """Per feature of ``labels`` [B, P], the index ``set * C + class`` of its (feature set, class) cell, the rows
    before ``first_set`` forming set 0 and the others set 1 (all rows set 0 when None); features labelled
    outside the classes go to the spare cell ``2 C``."""
    rows = torch.arange(labels.shape[0], device=labels.device)
    sets = (rows >= first_set).long() if first_set is not None else torch.zeros_like(rows)
    known = (labels >= 0) & (labels < num_classes)
    return torch.where(known, sets[:, None] * num_classes + labels.clamp(0, num_classes - 1), 2 * num_classes)


def _cell_sums(values: torch.Tensor, cell: torch.Tensor, keep: torch.Tensor, cells: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of ``values`` over kept features, kept count) per cell: fixed-size scatters, no host round trip."""
    keep = keep.to(values.dtype)
    sums = values.new_zeros(cells + 1).index_add_(0, cell.reshape(-1), (values * keep).reshape(-1))
    counts = values.new_zeros(cells + 1).index_add_(0, cell.reshape(-1), keep.reshape(-1))
    return sums[:cells], counts[:cells]


def dual_contrastive_losses(features: torch.Tensor, labels: torch.Tensor, assigned_anchors: torch.Tensor,
                            centres: torch.Tensor, bank_count: torch.Tensor, tau: float,
                            first_set: int | None = None, min_count: int = 1, reduction: str = "feature"
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(Eq. 15, Eq. 16) for projections ``[B, D, P]`` and labels ``[B, P]`` from one product against the
    stacked anchors and memory centres, as the training step needs both on the same features.

    The rows before ``first_set`` form one feature set and the rest another (the step's labeled and
    unlabeled images; one set when None). ``min_count = 2`` is the authors' code's edge case: a class with fewer than two features
    in its set takes part in neither term, and a class with fewer than two memory entries in no Eq. 16 term
    (with 1, every feature counts and Eq. 16 needs one entry). ``reduction="feature"`` averages each term over
    the features (Eqs. 15-16); ``"class"`` is the code's: per set and class the mean over its features, summed
    over the sets and the classes that take part, divided by the number of classes.
    """
    num_classes = centres.shape[0]
    cos = pixel_cosines(features, torch.cat([assigned_anchors, centres.to(assigned_anchors.dtype)]))
    filled = bank_count >= min_count
    cell, cells = _set_class_cells(labels, first_set, num_classes), 2 * num_classes
    if min_count > 1:
        per_cell = torch.zeros(cells + 1, dtype=torch.long, device=labels.device).scatter_add_(
            0, cell.reshape(-1), torch.ones_like(cell.reshape(-1)))
        labels = labels.masked_fill(per_cell[cell] < min_count, IGNORE_INDEX)
    if reduction == "feature":
        return (anchor_contrastive_term(cos[:, :num_classes], labels, tau),
                similarity_term(cos[:, num_classes:], labels, filled))
    known = (labels >= 0) & (labels < num_classes)
    idx = torch.where(known, labels, 0).long()
    anchor_ce = F.cross_entropy(cos[:, :num_classes] / tau, idx, reduction="none")
    dissimilarity = 1 - cos[:, num_classes:].gather(1, idx[:, None])[:, 0]
    terms = []
    for values, keep in ((anchor_ce, known), (dissimilarity, known & filled[idx])):
        sums, counts = _cell_sums(values, cell, keep, cells)
        terms.append((sums / counts.clamp(min=1)).sum() / num_classes)
    return terms[0], terms[1]


class MemoryBank(nn.Module):
    """Per-class FIFO queues of at most ``size`` feature vectors (Section 3.3, proximity-guided sampling).

    Stored as buffers ([C, N, D] ring buffer, its L2-normalised copy, fill counts and write pointers) so
    the bank is part of ``state_dict`` and survives exact resume. The normalised copy is written once per
    entry, so Eq. 16's class centres are one sum per step instead of a normalisation of the whole bank.

    Admission: teacher features of labeled pixels where the teacher is correct and confident (max
    probability > phi); of those, the ``top_k`` closest (cosine) to the class anchor when proximity is
    on, else the first ``top_k``.
    """

    def __init__(self, num_classes: int, size: int, dim: int):
        super().__init__()
        self.size = size
        self.register_buffer("bank", torch.zeros(num_classes, max(size, 1), dim))
        self.register_buffer("unit", torch.zeros(num_classes, max(size, 1), dim))  # slots not yet used stay 0
        self.register_buffer("count", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros(num_classes, dtype=torch.long))

    def _append(self, classes: torch.Tensor, feats: torch.Tensor, taken: torch.Tensor) -> None:
        """Ring-buffer write of ``feats`` [K, k, D] (k <= size) into the queues of ``classes`` [K]; only the
        entries where ``taken`` [K, k] is True, which form a prefix of each row. Untaken entries write their
        slot's own value back, so the write is one fixed-shape operation with no host round trip."""
        k = feats.shape[1]
        slots = (self.ptr[classes][:, None] + torch.arange(k, device=feats.device)) % self.size
        rows = classes[:, None].expand_as(slots)
        keep = taken[..., None]
        feats = feats.detach().to(self.bank.dtype)
        self.bank[rows, slots] = torch.where(keep, feats, self.bank[rows, slots])
        self.unit[rows, slots] = torch.where(keep, F.normalize(feats, dim=2), self.unit[rows, slots])
        added = taken.sum(1)
        self.ptr[classes] = (self.ptr[classes] + added) % self.size
        self.count[classes] = torch.clamp(self.count[classes] + added, max=self.size)

    def centres(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean normalised entry per class [C, D], entries per class [C]) straight from the ring buffer (order
        does not matter for a mean; unused slots are zero)."""
        return self.unit.sum(1) / self.count.clamp(min=1)[:, None].to(self.unit.dtype), self.count

    @staticmethod
    def eligible(labels: torch.Tensor, teacher_pred: torch.Tensor, teacher_conf: torch.Tensor, phi: float
                 ) -> torch.Tensor:
        """The pixels the bank may hold: the teacher is right and its confidence exceeds ``phi``."""
        return (teacher_pred == labels) & (teacher_conf > phi) & (labels != IGNORE_INDEX)

    @torch.no_grad()
    def admit(self, features: torch.Tensor, labels: torch.Tensor, teacher_pred: torch.Tensor,
              teacher_conf: torch.Tensor, phi: float, top_k: int, anchors: torch.Tensor | None = None) -> None:
        """Admit features [N, D] with ground truth ``labels``, given the teacher's prediction and confidence.

        All classes at once: each class ranks its eligible pixels (by closeness to its anchor, or by
        position) and the best ``min(top_k, size)`` are appended, best first."""
        if self.size == 0 or len(features) == 0:
            return
        num_classes = self.bank.shape[0]
        classes = torch.arange(num_classes, device=features.device)
        eligible = self.eligible(labels, teacher_pred, teacher_conf, phi)
        own = eligible[None] & (labels[None] == classes[:, None])  # [C, N]
        if anchors is not None:
            key = F.normalize(anchors.to(features.dtype), dim=1) @ F.normalize(features, dim=1).T
        else:  # first come, first admitted
            key = -torch.arange(len(features), device=features.device, dtype=features.dtype).expand(num_classes, -1)
        key, order = key.masked_fill(~own, float("-inf")).topk(min(top_k, self.size, len(features)), dim=1)
        self._append(classes, features[order], key > float("-inf"))
