"""Glyph set and embedded pretraining: seeded data without digits, weights that fit the backbone, the cache."""
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from reprokit.cli import main
from reprokit.config import ConfigError, ModelConfig
from reprokit.configure import from_dict, load_config
from reprokit.data.glyphs import (CLASSES, DUPLICATES, EXCLUDED, GlyphSetSpec, build_glyph_set, render_glyph,
                                  render_masters)
from reprokit.machine import machine_description
from reprokit.models import pretrain
from reprokit.models.deeplab import CheckpointKeyError, build_network
from reprokit.runs.origin import backbone_description, recorded_origin

TINY_GLYPHS = GlyphSetSpec(n_train_per_class=2, n_heldout_per_class=1)
TINY_RECIPE = pretrain.PretrainRecipe(glyphs=TINY_GLYPHS, steps=3, batch_size=16)
SMALL = dict(backbone="resnet18", width=8, output_stride=8, aspp_channels=16, decoder_channels=16,
             low_level_channels=8, aspp_rates=[1, 2, 3])


@pytest.fixture
def tiny_cache(tmp_path, monkeypatch):
    """Cache in tmp_path and a seconds-long recipe; counts the trainings."""
    monkeypatch.setenv("REPROKIT_PRETRAINED_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(pretrain, "DEFAULT_RECIPE", TINY_RECIPE)
    calls = []
    train = pretrain.train_trunk

    def counted(*args, **kwargs):
        calls.append(1)
        return train(*args, **kwargs)

    monkeypatch.setattr(pretrain, "train_trunk", counted)
    return calls


def test_glyph_set_is_seeded_balanced_and_48px():
    a, b = build_glyph_set(TINY_GLYPHS), build_glyph_set(TINY_GLYPHS)
    other = build_glyph_set(GlyphSetSpec(n_train_per_class=2, n_heldout_per_class=1, seed=1))
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.x_heldout, b.x_heldout)
    assert not np.array_equal(a.x_train, other.x_train)
    assert a.x_train.shape == (2 * len(CLASSES), 48, 48, 3) and a.x_train.dtype == np.uint8
    assert a.x_heldout.shape == (len(CLASSES), 48, 48, 3)
    assert np.bincount(a.y_train).tolist() == [2] * len(CLASSES)


def test_no_class_is_a_digit_or_a_lookalike():
    assert len(set(CLASSES)) == len(CLASSES) and all(len(c) == 1 for c in CLASSES)
    assert not set(CLASSES) & set("0123456789") and not any(c.isdigit() or c.isnumeric() for c in CLASSES)
    assert not set(CLASSES) & set("".join(EXCLUDED.values()) + DUPLICATES)
    assert {"O", "o", "I", "l", "S", "Z", "B", "g", "q", "G", "T"} <= set("".join(EXCLUDED.values()))


def test_every_font_draws_every_class():
    for char, row in zip(CLASSES, render_masters()):
        assert all(min(master.size) >= 3 and np.asarray(master).max() == 255 for master in row), char


def test_glyph_stands_out_from_its_background():
    masters = render_masters()
    for i in range(20):
        image, alpha = render_glyph(np.random.default_rng(i), TINY_GLYPHS, masters, i % len(CLASSES))
        assert image.shape == (48, 48, 3) and image.dtype == np.uint8
        grey = image.astype(float).mean(2)
        assert abs(grey[alpha > 0.5].mean() - grey[alpha < 0.05].mean()) > 30


def test_glyph_weights_load_into_the_backbone_and_are_cached(tiny_cache):
    cfg = ModelConfig(pretrained="glyphs", **SMALL)
    torch.manual_seed(0)
    net = build_network(cfg, 11)
    after_build = torch.rand(3)
    path = pretrain.weights_path(cfg)
    state = torch.load(path, weights_only=True)
    assert "conv1.weight" in state and "layer4.1.bn2.running_var" in state and not any(k.startswith("fc.") for k in state)
    assert torch.equal(net.backbone.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert torch.equal(net.backbone.stem[1].running_mean, state["bn1.running_mean"])
    mtime = path.stat().st_mtime_ns
    torch.manual_seed(0)
    build_network(cfg, 11)
    assert torch.equal(torch.rand(3), after_build)  # building the weights did not shift the run's RNG stream
    assert len(tiny_cache) == 1 and path.stat().st_mtime_ns == mtime
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    assert {"fonts", "classes", "excluded", "seed", "images", "steps", "recipe", "heldout_top1", "wall_seconds",
            "threads", "torch", "git"} <= meta.keys()
    assert meta["classes"] == list(CLASSES) and meta["images"] == {"train": 2 * len(CLASSES), "heldout": len(CLASSES)}
    assert all(len(digest) == 64 for digest in meta["fonts"].values())
    assert meta["machine"] == machine_description()  # another processor builds other weights


def test_processes_starting_together_build_once(tiny_cache):
    cfg = ModelConfig(**SMALL)
    paths = []
    workers = [threading.Thread(target=lambda: paths.append(pretrain.ensure_pretrained(cfg))) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(paths) == 2 and paths[0] == paths[1] and len(tiny_cache) == 1


def test_key_follows_the_trunk_not_the_head(tiny_cache):
    key = pretrain.cache_key(ModelConfig(**SMALL), TINY_RECIPE)
    assert pretrain.cache_key(ModelConfig(**{**SMALL, "aspp_channels": 32}), TINY_RECIPE) == key
    assert pretrain.cache_key(ModelConfig(**{**SMALL, "output_stride": 16}), TINY_RECIPE) != key
    assert pretrain.cache_key(ModelConfig(**SMALL), pretrain.PretrainRecipe(TINY_GLYPHS, steps=4)) != key


def test_weights_of_another_width_are_refused_naming_shapes(tiny_cache):
    path = pretrain.ensure_pretrained(ModelConfig(**SMALL))
    with pytest.raises(CheckpointKeyError, match="shapes.*model.width"):
        build_network(ModelConfig(**{**SMALL, "width": 16, "pretrained": str(path)}), 11)


def test_cli_prints_path_and_accuracy(tiny_cache, capsys):
    base = Path(__file__).resolve().parents[1] / "params/digits/base.yaml"
    args = ["pretrain", "--config", str(base), "--set", "model.width=8", "--threads", str(torch.get_num_threads())]
    assert main(args) == 0 and main(args) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert "held-out top-1" in first and "built in" in first and "cached" in second and len(tiny_cache) == 1
    digest = first.split("sha256 ")[1].split(",")[0]
    assert len(digest) == 16 and f"sha256 {digest}, cached" in second
    assert main(args + ["--force"]) == 0  # same machine, same seed: the rebuild reproduces the weights
    rebuilt, verdict = capsys.readouterr().out.splitlines()
    assert f"sha256 {digest}, built" in rebuilt and verdict == f"the weights it replaced: sha256 {digest}, the same"
    weights = pretrain.weights_path(load_config(str(base), ["model.width=8"]).model)
    torch.save({"other": torch.zeros(1)}, weights)
    assert main(args + ["--force"]) == 0
    assert "DIFFERENT" in capsys.readouterr().out.splitlines()[1] and len(tiny_cache) == 3


def test_config_accepts_glyphs_none_and_files_for_narrow_backbones_but_not_imagenet():
    for source, stored in (("glyphs", "glyphs"), ("none", None), ("weights/trunk.pt", "weights/trunk.pt")):
        cfg = from_dict({"train": {"iters": 1}, "model": {"width": 16, "pretrained": source}})
        assert cfg.model.pretrained == stored
    assert from_dict({"train": {"iters": 1}, "model": {"pretrained": "none"}}).hash() == \
        from_dict({"train": {"iters": 1}}).hash()  # "none" and null are one configuration
    with pytest.raises(ConfigError, match="'model.pretrained': 'imagenet' needs model.width 64"):
        from_dict({"train": {"iters": 1}, "model": {"width": 16, "pretrained": "imagenet"}})


def recorded_backbones(folder: Path, image_labels: bool | None = None) -> list[dict]:
    """The backbones the records of ``folder`` started from; ``image_labels`` True / False keeps only the runs
    of the image-label rows (``digits-weak-cam``, ``digits-weak-cosa``) / only the others."""
    runs = [r for r in sorted(folder.iterdir()) if r.is_dir()]
    if image_labels is not None:
        runs = [r for r in runs if r.name.startswith(("digits-weak-cam-", "digits-weak-cosa-")) == image_labels]
    origins = [recorded_origin(run_dir) for run_dir in runs]
    return [origin["backbone"] for origin in origins if "backbone" in origin]


def test_the_shipped_backbone_is_the_one_the_benchmark_records_start_from(monkeypatch):
    """The repository ships the digits backbones so that every machine starts from the same weights: those of
    the benchmark records, which replacing them would cut off from the code. The image-label rows' stride-4
    network (no stem max-pool) has a backbone of its own. The machine-check records started from the weights
    their processor built (shipped before, kept by git), all from the same ones."""
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    monkeypatch.delenv("REPROKIT_PRETRAINED_DIR", raising=False)
    shipped = backbone_description(load_config("params/digits/table4/ls.yaml").model)
    assert shipped["sha256"] is not None and shipped["heldout_top1"] > 0.98
    benchmark = recorded_backbones(root / "docs/runs/benchmark", False) + recorded_backbones(root / "docs/runs/quick")
    assert len(benchmark) >= 4 and all(b == shipped for b in benchmark), (shipped, benchmark)
    stride4 = backbone_description(load_config("params/digits/weak/cam.yaml").model)
    assert stride4["sha256"] not in (None, shipped["sha256"]) and stride4["heldout_top1"] > 0.98
    image_labels = recorded_backbones(root / "docs/runs/benchmark", True)
    assert len(image_labels) >= 5 and all(b == stride4 for b in image_labels), (stride4, image_labels)
    machine_check = recorded_backbones(root / "docs/runs/machine-check")
    assert len(machine_check) >= 8 and len({b["sha256"] for b in machine_check}) == 1
    assert machine_check[0]["sha256"] != shipped["sha256"]


def test_an_empty_cache_is_seeded_with_the_shipped_weights_not_trained(tmp_path, monkeypatch):
    """From any working directory (a notebook's folder, a cluster's scratch), a run finds the weights the
    repository ships instead of training others: another processor would build other weights."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REPROKIT_PRETRAINED_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(pretrain, "train_trunk", lambda *a, **k: pytest.fail("trained instead of seeding"))
    model = load_config(Path(__file__).resolve().parents[1] / "params/digits/table4/ls.yaml").model
    path = pretrain.ensure_pretrained(model)
    shipped = pretrain.SHIPPED_DIR / path.name
    assert path.parent == tmp_path / "cache" and path.read_bytes() == shipped.read_bytes()
    assert json.loads(path.with_name(path.name + ".json").read_text())["heldout_top1"] > 0.98
