"""Pixel selection must not make a GPU wait for the host (issue: "runs on the device with no host
synchronisation per step"). CI has no GPU, so this records the aten operators the functions dispatch on
the CPU and rejects those that read a device value back on CUDA."""
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from reprokit.methods.stpg import mismatch_scores, select_pixels, weighted_ce
from tests.conftest import step_batches
from tests.stpg_reference import push
from tests.test_methods import _method

SYNCING = {"aten.nonzero", "aten._local_scalar_dense", "aten.bincount", "aten.masked_select", "aten.is_nonzero",
           "aten._unique2", "aten.unique_dim", "aten.unique_consecutive", "aten.item", "aten.equal"}


class SyncingOps(TorchDispatchMode):
    """Collects dispatched operators that synchronise with the host on CUDA."""

    def __init__(self):
        super().__init__()
        self.found = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        bool_index = name in ("aten.index", "aten.index_put", "aten.index_put_") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or []))
        if name in SYNCING or bool_index:
            self.found.append(name)
        return func(*args, **(kwargs or {}))


def test_the_detector_sees_boolean_indexing_and_bincount():
    x = torch.arange(6)
    with SyncingOps() as ops:
        x[x > 2].sum()
        torch.bincount(x)
    assert ops.found == ["aten.index", "aten.bincount"]


def test_pixel_selection_and_its_loss_dispatch_nothing_that_syncs():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randint(0, 4, (2, 6, 6), generator=g), torch.randint(0, 4, (2, 6, 6), generator=g)
    valid = torch.rand(2, 6, 6, generator=g) > 0.2
    logits, conf = torch.randn(2, 4, 6, 6, requires_grad=True), torch.rand(2, 6, 6, generator=g)
    target = torch.where(valid, teacher, 255)
    with SyncingOps() as ops:
        scores = mismatch_scores(student, teacher, 4, valid=valid)
        cons, hmis, _ = select_pixels(student, teacher, scores)
        weighted_ce(logits, target, conf * (cons | hmis)).backward()
    assert ops.found == []


def test_a_whole_stpg_step_dispatches_nothing_that_syncs_once_matching_is_frozen(tiny_cfg):
    """Selection, both modules, prototypes, bank admission and both contrastive losses. The Hungarian matching
    (Eq. 14, on the host with scipy) is the step's one round trip; ``matching_freeze`` ends it."""
    cfg, m = _method(tiny_cfg, matching_freeze=0.0)
    labeled, unlabeled = step_batches(cfg)
    m.train()
    m.training_step(labeled, unlabeled, 0)  # matches once
    push(m.bank, 0, torch.randn(3, m.params.proj_dim))  # Eq. 16 has a centre to pull towards
    with SyncingOps() as ops:
        out = m.training_step(labeled, unlabeled, 5)
        sum(out.losses.values()).backward()
    assert {"ac", "sim", "pro", "gen"} <= set(out.losses) and out.losses["sim"] > 0
    assert ops.found == []
