"""The method contract, checked for every entry of the method registry: a new method is covered by adding it
to the registry. Each method is built on the tiny digit scenes, with labels of the first kind it learns from,
and taken through what the engine and the inspector ask of it; and no method's training step may read the
hidden ground truth of unlabeled or weakly labeled images."""
import copy

import pytest
import torch
from torch import nn

from reprokit.methods import build_method, registry
from reprokit.methods.base import Method, StepOutput
from tests.conftest import categories, step_batches

METHODS = sorted(registry())


def _built(tiny_cfg, name: str, **params):
    torch.manual_seed(0)
    kind = registry()[name].cls.label_kinds[0]
    cfg = tiny_cfg(method={"name": name, **params}, data={"label_kind": kind})
    return cfg, build_method(cfg, cfg.data.num_classes)


def _step(method: Method, labeled: dict, unlabeled: dict) -> StepOutput:
    """One training step on a copy (steps update buffers such as memory banks) from a fixed RNG state."""
    torch.manual_seed(1)
    return copy.deepcopy(method).train().training_step(labeled, unlabeled, step=0)


def _with_noise_masks(batch: dict, num_classes: int) -> dict:
    if "hidden_mask" not in batch:
        return batch
    g = torch.Generator().manual_seed(7)
    noise = torch.randint(0, num_classes, batch["hidden_mask"].shape, generator=g)
    noise[torch.rand(noise.shape, generator=g) < 0.2] = 255
    return {**batch, "hidden_mask": noise}


@pytest.mark.parametrize("name", METHODS)
def test_losses_do_not_depend_on_hidden_masks(tiny_cfg, name):
    """Replacing the hidden ground truth of the unlabeled images (and of weakly labeled ones) by noise leaves
    every loss bit-identical (diagnostics may change: they measure pseudo-labels against it)."""
    cfg, method = _built(tiny_cfg, name)
    labeled, unlabeled = step_batches(cfg)
    assert "mask" not in unlabeled and "hidden_mask" in unlabeled
    weak = cfg.data.label_kind != "dense"
    assert ("mask" in labeled) != weak and ("hidden_mask" in labeled) == weak
    real = _step(method, labeled, unlabeled).losses
    c = cfg.data.num_classes
    noisy = _step(method, _with_noise_masks(labeled, c), _with_noise_masks(unlabeled, c)).losses
    assert real.keys() == noisy.keys()
    for key in real:
        assert torch.equal(real[key], noisy[key]), key


def test_the_oracle_instrument_is_the_one_reader_of_hidden_masks(tiny_cfg):
    """The check above has teeth: Mean Teacher's oracle, which trains on the hidden masks by declaration,
    changes its loss when they change."""
    cfg, method = _built(tiny_cfg, "mean_teacher", oracle=True)
    labeled, unlabeled = step_batches(cfg)
    real = _step(method, labeled, unlabeled).losses["unsup"]
    assert not torch.equal(real, _step(method, labeled, _with_noise_masks(unlabeled, 11)).losses["unsup"])


@pytest.mark.parametrize("name", METHODS)
def test_method_contract(tiny_cfg, name):
    cfg, method = _built(tiny_cfg, name)
    assert isinstance(method, Method) and method.params.name == name
    assert isinstance(method.unlabeled_batches, int) and method.unlabeled_batches >= 1
    assert isinstance(method.uses_unlabeled, bool) and isinstance(method.may_skip_params, bool)
    assert isinstance(method.reads_hidden_masks(), bool)
    method.set_total_steps(4)
    labeled, unlabeled = step_batches(cfg)
    unlabeled = unlabeled if method.uses_unlabeled else None

    # one training step and its backward, as the engine runs it
    method.train()
    torch.manual_seed(1)
    out = method(labeled, unlabeled, 0)
    assert out.losses and all(v.dim() == 0 and torch.isfinite(v) for v in out.losses.values())
    students = method.students()
    assert students and all(isinstance(net, nn.Module) for net in students.values())
    sum(out.losses.values()).backward()
    grads = [p.grad for net in students.values() for p in net.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    for teacher, student, momentum in method.ema_pairs():
        assert not any(p.requires_grad for p in teacher.parameters()) and 0 <= momentum <= 1
        assert 0 <= method.ema_momentum(momentum, 0) <= 1

    # state_dict round trip into a freshly built method
    _, fresh = _built(tiny_cfg, name)
    fresh.load_state_dict(method.state_dict())
    for key, value in method.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key

    # the inspector's maps and the evaluated network, in eval mode
    method.eval()
    maps = method.pseudo_labels(labeled)
    b, _, h, w = labeled["image"].shape
    for key in ("teacher_label", "confidence", "student_pred"):
        assert maps[key].shape == (b, h, w), key
    for layer in categories(method):  # each declared category layer has its map and a name per colour
        assert maps[layer.key].shape == (b, h, w) and len(layer.names) == len(layer.colours), layer.title
        assert int(maps[layer.key].max()) < len(layer.names)
    with torch.no_grad():
        logits = method.eval_network()(labeled["image"])
    assert logits.shape == (b, cfg.data.num_classes, h, w)
