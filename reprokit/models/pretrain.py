"""Embedded pretraining: the segmentation backbone's trunk learns to classify glyphs, offline.

torchvision has ImageNet weights only for full-width ResNets, so the narrow CPU backbone of the
embedded default starts from scratch. This module is its stand-in for ImageNet initialisation: the
trunk, built by :func:`reprokit.models.resnet.resnet_trunk` exactly as the backbone builds it, is
trained as an image classifier (global average pooling + one linear layer) on the glyph set
(:mod:`reprokit.data.glyphs`: letters and symbols on the digit scenes' backgrounds, no digit and no
digit look-alike), so it learns strokes and figure/ground but not the answer.

The trunk's weights are cached under torchvision's key names (no ``fc.``), so
:func:`~reprokit.models.deeplab.load_pretrained` reads them like any other weights file. The file
name holds a hash of everything that determines them; a JSON file beside it records how they were
made. Building is guarded by a file lock, so processes that start together train once.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from reprokit.config import DataConfig, ModelConfig
from reprokit.data.glyphs import CLASSES, GlyphSet, GlyphSetSpec, build_glyph_set, describe
from reprokit.machine import machine_description
from reprokit.records import git_commit, write_atomic, write_json_atomic
from reprokit.models.resnet import ResNetBackbone, resnet_trunk

RECIPE_VERSION = 1  # bump whenever the training code changes what the weights are
KEY_FIELDS = ("backbone", "width", "output_stride", "stem_maxpool")  # the ModelConfig fields the trunk depends on


@dataclass(frozen=True)
class PretrainRecipe:
    """SGD with Nesterov momentum, linear warm-up then cosine decay to zero; label smoothing because
    a few glyphs stay ambiguous at 16 px in some fonts. About 100 s with 2 CPU threads, 98 % held-out
    top-1 for the default backbone; at a peak rate of 0.1 or more the trunk stalls at chance level."""

    glyphs: GlyphSetSpec = field(default_factory=GlyphSetSpec)
    steps: int = 1000
    batch_size: int = 128
    lr: float = 0.05
    warmup_steps: int = 100
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    seed: int = 0
    version: int = RECIPE_VERSION


DEFAULT_RECIPE = PretrainRecipe()


class GlyphClassifier(nn.Module):
    """The segmentation backbone over a given trunk, then global average pooling and a linear layer."""

    def __init__(self, model_cfg: ModelConfig, trunk: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = ResNetBackbone(model_cfg, trunk)
        self.fc = nn.Linear(self.backbone.high_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(x)[1].mean((2, 3)))


def cache_dir() -> Path:
    """``$REPROKIT_PRETRAINED_DIR``, else ``data/pretrained`` under the working directory (like ``data/digits``)."""
    return Path(os.environ.get("REPROKIT_PRETRAINED_DIR", "data/pretrained"))


def cache_key(model_cfg: ModelConfig, recipe: PretrainRecipe) -> str:
    identity = {"model": {k: getattr(model_cfg, k) for k in KEY_FIELDS}, "recipe": asdict(recipe),
                "glyphs": describe(recipe.glyphs)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def weights_path(model_cfg: ModelConfig, recipe: PretrainRecipe | None = None) -> Path:
    recipe = recipe or DEFAULT_RECIPE
    return cache_dir() / f"glyphs-{cache_key(model_cfg, recipe)}.pt"


def _to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float N x 3 x H x W, normalised as the segmentation data is."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (DataConfig().mean, DataConfig().std))
    return (x - mean) / std


def _learning_rate(recipe: PretrainRecipe, step: int) -> float:
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    return recipe.lr * 0.5 * (1 + np.cos(np.pi * progress))


@torch.no_grad()
def heldout_accuracy(net: nn.Module, glyphs: GlyphSet, batch: int = 500) -> float:
    net.eval()
    correct = sum(int((net(_to_input(glyphs.x_heldout[i:i + batch])).argmax(1)
                       == torch.from_numpy(glyphs.y_heldout[i:i + batch])).sum())
                  for i in range(0, len(glyphs.y_heldout), batch))
    return correct / len(glyphs.y_heldout)


def train_trunk(model_cfg: ModelConfig, recipe: PretrainRecipe, progress: bool = False) -> tuple[dict, dict]:
    """Train on a freshly drawn glyph set; returns (trunk state dict in torchvision names, metrics).

    Runs under a forked torch RNG, so a training run that builds the weights on first use draws
    the same random numbers afterwards as one that finds them cached.
    """
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        glyphs = build_glyph_set(recipe.glyphs, progress)
        trunk = resnet_trunk(dataclasses.replace(model_cfg, pretrained=None))
        net = GlyphClassifier(model_cfg, trunk, len(CLASSES))
        decay = [p for p in net.parameters() if p.dim() > 1]  # no weight decay on BN and biases
        rest = [p for p in net.parameters() if p.dim() <= 1]
        optimizer = torch.optim.SGD([{"params": decay, "weight_decay": recipe.weight_decay}, {"params": rest}],
                                    lr=recipe.lr, momentum=recipe.momentum, nesterov=True)
        order = torch.Generator().manual_seed(recipe.seed)
        labels = torch.from_numpy(glyphs.y_train)
        batches, loss = [], torch.tensor(0.0)
        net.train()
        for step in tqdm(range(recipe.steps), desc="pretrain", disable=not progress, leave=False):
            if not batches:
                batches = list(torch.randperm(len(labels), generator=order).split(recipe.batch_size))[::-1]
            idx = batches.pop()
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(recipe, step)
            loss = F.cross_entropy(net(_to_input(glyphs.x_train[idx.numpy()])), labels[idx],
                                   label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        accuracy = heldout_accuracy(net, glyphs)
    state = {k: v.detach().clone() for k, v in trunk.state_dict().items() if not k.startswith("fc.")}
    metrics = {"heldout_top1": round(accuracy, 4), "final_loss": round(loss.item(), 4),
               "images": {"train": len(glyphs.y_train), "heldout": len(glyphs.y_heldout)},
               "seconds": round(time.perf_counter() - start, 1)}
    return state, metrics


def _build(path: Path, model_cfg: ModelConfig, recipe: PretrainRecipe, progress: bool) -> None:
    """Train, then write the provenance and the weights atomically (weights last: they mark completion)."""
    state, metrics = train_trunk(model_cfg, recipe, progress)
    glyph_set = describe(recipe.glyphs)
    write_json_atomic(path.with_name(path.name + ".json"), {
        "weights": path.name,
        "model": {k: getattr(model_cfg, k) for k in KEY_FIELDS},
        "fonts": glyph_set["fonts"],
        "classes": glyph_set["classes"],
        "excluded": {"digit_lookalikes": glyph_set["excluded"], "duplicates": glyph_set["duplicates"]},
        "seed": recipe.seed,
        "images": metrics["images"],
        "steps": recipe.steps,
        "recipe": asdict(recipe),
        "heldout_top1": metrics["heldout_top1"],
        "final_loss": metrics["final_loss"],
        "wall_seconds": metrics["seconds"],
        "threads": torch.get_num_threads(),
        "machine": machine_description(),  # another processor builds other weights from the same recipe
        "torch": torch.__version__,
        "git": git_commit(),
    })
    write_atomic(path, lambda fh: torch.save(state, fh))


# the weights the repository ships (the benchmark records start from them): another processor would build
# others from the same recipe, so a cache without them is seeded from here rather than trained
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "data" / "pretrained"


def ensure_pretrained(model_cfg: ModelConfig, progress: bool = False, force: bool = False) -> Path:
    """Path of the glyph-pretrained trunk weights for ``model_cfg`` in the cache (:func:`cache_dir`): copied
    from the repository's shipped weights when it ships them, whatever the working directory, else trained
    (and always trained with ``force``). Training runs on the CPU: a few minutes once, then instant."""
    recipe = DEFAULT_RECIPE
    path = weights_path(model_cfg, recipe)
    if path.is_file() and not force:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if force or not path.is_file():  # another process may have built it while this one waited
            shipped = SHIPPED_DIR / path.name
            if not force and shipped.is_file():
                _seed_from(shipped, path)
            else:
                _build(path, model_cfg, recipe, progress)
    return path


def _seed_from(shipped: Path, path: Path) -> None:
    """Copy the shipped weights and their provenance into the cache (weights last: they mark completion)."""
    record = shipped.with_name(shipped.name + ".json")
    if record.is_file():
        write_atomic(path.with_name(path.name + ".json"), lambda fh: fh.write(record.read_bytes()))
    write_atomic(path, lambda fh: fh.write(shipped.read_bytes()))
