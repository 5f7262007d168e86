"""Bad data and bad settings: every error names the culprit and what was expected, and nothing
already on disk changes. Ordered as the issue: data loss first."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageFile

from reprokit.cli import main as cli_main
from reprokit.config import ConfigError, DataConfig, ModelConfig
from reprokit.configure import from_dict
from reprokit.data import voc
from reprokit.data.check import check_data
from reprokit.data.datasets import SegDataset
from reprokit.data.digits import BUILD_MARK, build_digit_scenes, ensure_digit_scenes
from reprokit.data.errors import DataRootError, ImageError, LabelError, MaskError, SizeError
from reprokit.data.palette import voc_palette
from reprokit.data.samples import load_sample
from reprokit.data.splits import read_list
from reprokit.engine.checkpoint import FORMAT, CheckpointError, load_checkpoint, save_atomic
from reprokit.engine.rundir import RunDirError, RunDirWarning, read_metrics
from reprokit.engine.train import Trainer, train
from reprokit.methods import method_params
from reprokit.models.deeplab import CheckpointKeyError, build_network
from reprokit.records import write_atomic, write_json_atomic
from tests.conftest import TINY_SPEC, tiny_raw, tree_digest


def _user_tree(root):
    """A directory that is plainly someone's data set: a VOC-style list and an image."""
    (root / "ImageSets/Segmentation").mkdir(parents=True)
    (root / "ImageSets/Segmentation/train.txt").write_text("2007_000032\n")
    (root / "JPEGImages").mkdir()
    Image.new("RGB", (8, 8)).save(root / "JPEGImages/2007_000032.jpg")
    return root


# --- 1. data loss ---------------------------------------------------------------------------------

def test_training_on_digits_never_builds_into_a_users_tree(tiny_cfg, tmp_path):
    tree, run = _user_tree(tmp_path / "VOC2012"), tmp_path / "run"
    before = tree_digest(tree)
    with pytest.raises(DataRootError, match=r"VOC2012: refusing to build the digit scenes .*found ImageSets/, "
                                            r"JPEGImages/.*set data.dataset"):
        train(tiny_cfg(data={"root": str(tree)}), run)
    assert tree_digest(tree) == before and not run.exists()


def test_cli_refuses_both_ways_and_writes_nothing(tmp_path, capsys):
    tree = _user_tree(tmp_path / "mine")
    before = tree_digest(tree)
    assert cli_main(["data", "digits", "--out", str(tree), "--n-train", "4", "--n-val", "2"]) == 2
    assert "mine: refusing to build the digit scenes" in capsys.readouterr().err
    assert cli_main(["train", "--set", f"data.root={tree}", "--set", "train.iters=1",
                     "--out", str(tmp_path / "run")]) == 2
    assert "found ImageSets/, JPEGImages/" in capsys.readouterr().err
    assert tree_digest(tree) == before and not (tmp_path / "run").exists()


def test_a_file_is_not_a_build_directory(tmp_path):
    (tmp_path / "f").write_text("notes")
    with pytest.raises(DataRootError, match=r"f: cannot build the digit scenes here: it is a file"):
        ensure_digit_scenes(tmp_path / "f")
    assert (tmp_path / "f").read_text() == "notes"


def test_builds_into_empty_missing_or_own_directories(digits_root, tmp_path):
    before = tree_digest(digits_root)
    assert ensure_digit_scenes(digits_root) == digits_root and tree_digest(digits_root) == before  # finished: kept
    (tmp_path / "empty").mkdir()
    build_digit_scenes(tmp_path / "empty", TINY_SPEC)
    build_digit_scenes(tmp_path / "missing/deeper", TINY_SPEC)
    assert (tmp_path / "empty/meta.json").is_file() and (tmp_path / "missing/deeper" / BUILD_MARK).is_file()
    interrupted = tmp_path / "interrupted"  # a build killed before meta.json: its mark makes it ours to redo
    build_digit_scenes(interrupted, TINY_SPEC)
    (interrupted / "meta.json").unlink()
    ensure_digit_scenes(interrupted, TINY_SPEC)
    rebuilt, fresh = tree_digest(interrupted), tree_digest(tmp_path / "empty")
    assert rebuilt.pop("meta.json") and fresh.pop("meta.json") and rebuilt == fresh  # meta.json holds a build time


# --- 2-4. bad images, masks and lists: a generated VOC-layout tree ------------------------------------

NUM_CLASSES = 4


def _write_mask(path, labels):
    img = Image.fromarray(np.asarray(labels, np.uint8), mode="P")
    img.putpalette(voc_palette().reshape(-1).tolist())
    img.save(path)


def _voc_tree(root, n_train=8, n_val=4, size=32):
    """A small Pascal VOC tree (classic layout): noise images, masks of classes 0..3 with a 255 band."""
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        ids = [f"{split}_{i}" for i in range(n)]
        for i in ids:
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / f"JPEGImages/{i}.jpg")
            labels = rng.integers(0, NUM_CLASSES, (size, size))
            labels[size // 2] = 255
            _write_mask(root / f"SegmentationClass/{i}.png", labels)
        (root / f"ImageSets/Segmentation/{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def _truncate(path, keep=0.9):
    """Cut the end off a file, as an interrupted download does (headers intact, pixel data missing)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _with_value(path, value):
    labels = np.array(Image.open(path))
    labels[3, 5] = value
    _write_mask(path, labels)


def _voc_cfg(tiny_cfg, root, train=None, **data):
    return tiny_cfg(data={"dataset": "voc", "voc_layout": "classic", "root": str(root), "num_classes": NUM_CLASSES,
                          "labeled_fraction": None, **data}, train={**tiny_raw(root)["train"], **(train or {})})


@pytest.fixture
def voc_root(tmp_path):
    return _voc_tree(tmp_path / "VOC2012")


def test_a_truncated_training_image_is_named_with_its_list_line(tiny_cfg, voc_root, tmp_path):
    _truncate(voc_root / "JPEGImages/train_2.jpg")
    before = tree_digest(voc_root)
    with pytest.raises(ImageError, match=r"JPEGImages/train_2.jpg: cannot decode the image \(image file is truncated.*"
                                         r"expected a complete image file \(from list line .*train.txt:3\)"):
        train(_voc_cfg(tiny_cfg, voc_root), tmp_path / "run")
    assert tree_digest(voc_root) == before
    assert not (tmp_path / "run/checkpoint.pt").exists()
    meta = json.loads((tmp_path / "run/meta.json").read_text())
    assert meta["status"] == "failed" and "train_2.jpg" in meta["error"]


def test_partial_images_are_refused_even_when_pil_is_told_to_load_them(voc_root, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    _truncate(voc_root / "JPEGImages/train_0.jpg")
    _truncate(voc_root / "SegmentationClass/train_1.png")
    cfg = DataConfig(dataset="voc", voc_layout="classic", root=str(voc_root), num_classes=NUM_CLASSES)
    samples = read_list(voc_root / "ImageSets/Segmentation/train.txt", voc_root, voc.resolver(voc_root, "classic"))
    with pytest.raises(ImageError, match="train_0.jpg: cannot decode the image"):
        load_sample(samples[0], cfg)
    with pytest.raises(MaskError, match=r"train_1.png: cannot decode the mask .*train.txt:2"):
        load_sample(samples[1], cfg)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored


def test_a_bad_val_image_stops_before_training_and_leaves_the_run_alone(tiny_cfg, voc_root, tmp_path):
    run = tmp_path / "run"
    train(_voc_cfg(tiny_cfg, voc_root, train={"iters": 2}), run)
    _truncate(voc_root / "JPEGImages/val_1.jpg")
    tree, run_before = tree_digest(voc_root), tree_digest(run)
    with pytest.raises(ImageError, match=r"val_1.jpg: cannot decode the image .*val.txt:2"):
        train(_voc_cfg(tiny_cfg, voc_root, train={"iters": 2}), run)
    assert tree_digest(voc_root) == tree and tree_digest(run) == run_before


@pytest.mark.parametrize("split,method", [("train", "supervised"), ("val", "supervised"),
                                          ("unlabeled", "mean_teacher")])
def test_a_label_value_beyond_num_classes_is_named(tiny_cfg, voc_root, tmp_path, split, method):
    lists = voc_root / "ImageSets/Segmentation"
    (lists / "labeled.txt").write_text("train_0\ntrain_1\ntrain_2\ntrain_3\n")
    (lists / "unlabeled.txt").write_text("train_4\ntrain_5\ntrain_6\ntrain_7\n")
    bad, line = {"train": ("train_1", "labeled.txt:2"), "val": ("val_2", "val.txt:3"),
                 "unlabeled": ("train_6", "unlabeled.txt:3")}[split]
    _with_value(voc_root / f"SegmentationClass/{bad}.png", 30)
    before = tree_digest(voc_root)
    cfg = _voc_cfg(tiny_cfg, voc_root, labeled_list=str(lists / "labeled.txt"),
                   unlabeled_list=str(lists / "unlabeled.txt"), unlabeled_batch_size=2)
    cfg.method = method_params({"name": method})
    with pytest.raises(LabelError, match=rf"{bad}.png: label value 30 at row 3, column 5 is neither a class id 0..3 "
                                         rf"\(data.num_classes = 4\) nor 255 \(ignore\).*{line}"):
        train(cfg, tmp_path / "run")
    assert tree_digest(voc_root) == before
    assert not (tmp_path / "run/checkpoint.pt").exists()
    if split == "val":  # found by the checks before training: the run directory was never created
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_mask_of_another_size_stops_before_training(tiny_cfg, voc_root, tmp_path, split):
    _write_mask(voc_root / f"SegmentationClass/{split}_1.png", np.zeros((24, 24), np.uint8))
    before = tree_digest(voc_root)
    with pytest.raises(SizeError, match=rf"{split}_1.png: the mask is 24x24 pixels but its image .*{split}_1.jpg is "
                                        rf"32x32; expected the same size .*{split}.txt:2"):
        train(_voc_cfg(tiny_cfg, voc_root), tmp_path / "run")
    assert tree_digest(voc_root) == before and not (tmp_path / "run").exists()


def test_reading_a_sample_decodes_each_file_once(voc_root, monkeypatch):
    """The checks ride on the decode the loader needs anyway: one decoder per file, no second pass."""
    decoders = []
    original = Image._getdecoder
    monkeypatch.setattr(Image, "_getdecoder",
                        lambda mode, name, *a, **k: decoders.append(name) or original(mode, name, *a, **k))
    cfg = DataConfig(dataset="voc", voc_layout="classic", root=str(voc_root), num_classes=NUM_CLASSES, crop_size=32)
    samples = read_list(voc_root / "ImageSets/Segmentation/train.txt", voc_root, voc.resolver(voc_root, "classic"))
    item = SegDataset(samples, cfg, train=True)[(0, 7)]
    assert item["mask"].shape == (32, 32)
    assert sorted(decoders) == ["jpeg", "zip"]  # the JPEG image and the PNG mask, once each


def test_data_check_lists_exactly_the_bad_files(voc_root, tmp_path, capsys):
    lists = voc_root / "ImageSets/Segmentation"
    lists.joinpath("train.txt").write_text(lists.joinpath("train.txt").read_text() + "train_99\n")  # no such image
    _truncate(voc_root / "JPEGImages/train_2.jpg")
    (voc_root / "SegmentationClass/train_4.png").write_bytes(b"not a png")
    _with_value(voc_root / "SegmentationClass/val_0.png", 30)
    _write_mask(voc_root / "SegmentationClass/train_6.png", np.zeros((24, 24), np.uint8))
    before = tree_digest(voc_root)
    cfg_file = tmp_path / "voc.yaml"
    cfg_file.write_text(yaml.safe_dump({"data": {"dataset": "voc", "voc_layout": "classic", "root": str(voc_root),
                                                 "num_classes": NUM_CLASSES}, "train": {"iters": 1}}))
    assert cli_main(["data", "check", str(cfg_file)]) == 1
    out = capsys.readouterr().out
    assert "checked 8 labeled, 0 unlabeled, 4 val samples (24 files)" in out and "5 problem(s):" in out
    kinds = {line.strip(): next_line.strip() for line, next_line in zip(out.splitlines(), out.splitlines()[1:])
             if line.endswith("(1):")}
    assert kinds.keys() == {"list line (1):", "unreadable image (1):", "unreadable mask (1):",
                            "label value out of range (1):", "mask size differs from image (1):"}
    assert re.match(r".*train.txt:9: image file missing for 'train_99'", kinds["list line (1):"])
    assert re.match(r".*JPEGImages/train_2.jpg: cannot decode the image .*train.txt:3", kinds["unreadable image (1):"])
    assert re.match(r".*SegmentationClass/train_4.png: cannot decode the mask .*train.txt:5",
                    kinds["unreadable mask (1):"])
    assert re.match(r".*SegmentationClass/val_0.png: label value 30 .*val.txt:1",
                    kinds["label value out of range (1):"])
    assert re.match(r".*SegmentationClass/train_6.png: the mask is 24x24 .*train.txt:7",
                    kinds["mask size differs from image (1):"])
    assert tree_digest(voc_root) == before


def test_data_check_passes_the_digit_scenes(digits_root, tmp_path, capsys):
    cfg_file = tmp_path / "digits.yaml"
    cfg_file.write_text(yaml.safe_dump(tiny_raw(digits_root)))
    before = tree_digest(digits_root)
    assert cli_main(["data", "check", str(cfg_file)]) == 0
    out = capsys.readouterr().out
    assert "checked 12 labeled, 36 unlabeled, 12 val samples (120 files)\nno problems found" in out
    assert tree_digest(digits_root) == before


def test_data_check_shows_a_progress_bar(digits_root, monkeypatch, capsys):
    monkeypatch.setenv("REPROKIT_PROGRESS", "1")
    report = check_data(from_dict(tiny_raw(digits_root)).data, progress=True)
    assert report.ok and "checking files: 100%" in capsys.readouterr().err


# --- 6. a run that never trained does not lock its directory ---------------------------------------------

def test_a_run_stopped_by_bad_data_does_not_lock_its_directory(tiny_cfg, voc_root, tmp_path):
    _with_value(voc_root / "SegmentationClass/train_5.png", 5)  # the data has 6 classes, the config says 4
    run = tmp_path / "run"
    with pytest.raises(LabelError, match=r"train_5.png: label value 5 .*data.num_classes = 4"):
        train(_voc_cfg(tiny_cfg, voc_root, train={"ckpt_every": 6}), run)
    assert (run / "config.yaml").is_file() and not (run / "checkpoint.pt").exists()
    summary = train(_voc_cfg(tiny_cfg, voc_root, num_classes=6, train={"ckpt_every": 6}), run)  # the corrected setting
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["num_classes"] == 6
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "finished" and meta["error"] is None and len(summary["iou"]) == 6
    with pytest.raises(ConfigError, match=r"different configuration .* differs in data.num_classes"):
        train(_voc_cfg(tiny_cfg, voc_root, train={"ckpt_every": 6}), run)  # now it has results: locked


def test_a_method_without_unlabeled_data_is_refused_before_the_run_directory(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"method 'mean_teacher' needs unlabeled data"):
        train(tiny_cfg(method={"name": "mean_teacher"}, data={"labeled_fraction": None}), tmp_path / "run")
    assert not (tmp_path / "run").exists()


# --- 7. crash leftovers -------------------------------------------------------------------------------------

class _Crash(Exception):
    """Stands in for a kill right after a checkpoint."""


def _crash_after_step_3(monkeypatch):
    save = Trainer._save

    def save_then_crash(self, step):
        save(self, step)
        if step == 3:
            raise _Crash

    monkeypatch.setattr(Trainer, "_save", save_then_crash)


def _damage_like_a_crash(run):
    """What a kill and a careless copy can leave: half a metric line, half a config.yaml, a stale temp file."""
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 4, "loss": 0.71')
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text[: len(text) // 2])
    (run / ".checkpoint.pt.tmp99999").write_bytes(b"PK\x03\x04 half a zip")


def test_fault_injection_resume_repairs_what_a_crash_left(tiny_cfg, tmp_path, monkeypatch):
    cfg, run = tiny_cfg(), tmp_path / "run"
    train(tiny_cfg(), tmp_path / "straight")
    with monkeypatch.context() as patch:
        _crash_after_step_3(patch)
        with pytest.raises(_Crash):
            train(cfg, run)
    config_text = (run / "config.yaml").read_text()
    _damage_like_a_crash(run)
    with pytest.warns(RunDirWarning) as warned:
        train(cfg, run)
    said = " | ".join(str(w.message) for w in warned)
    assert "config.yaml was damaged" in said and "rewrote it with this configuration" in said
    assert "removed 1 half-written file(s) a crash left behind: .checkpoint.pt.tmp99999" in said
    assert "metrics.jsonl: dropped an incomplete last line" in said
    assert (run / "config.yaml").read_text() == config_text and not list(run.glob(".*tmp*"))
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")[0]] == [1, 2, 3, 4, 5, 6]
    assert json.loads((run / "meta.json").read_text())["status"] == "finished"
    resumed, straight = (load_checkpoint(p / "checkpoint.pt")["method"] for p in (run, tmp_path / "straight"))
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)


def test_the_command_line_resumes_a_crashed_run_and_says_what_it_repaired(digits_root, tmp_path, monkeypatch,
                                                                          capsys):
    raw, run = tiny_raw(digits_root), tmp_path / "run"
    with monkeypatch.context() as patch:
        _crash_after_step_3(patch)
        with pytest.raises(_Crash):
            train(from_dict(raw), run)
    _damage_like_a_crash(run)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    assert cli_main(["train", "--config", str(tmp_path / "c.yaml"), "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert "reprokit: warning: " in err and "metrics.jsonl: dropped an incomplete last line" in err
    assert "config.yaml was damaged" in err and "removed 1 half-written file(s)" in err


def test_fault_injection_another_configuration_is_refused_and_nothing_changes(tiny_cfg, tmp_path, monkeypatch):
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _crash_after_step_3(patch)
        with pytest.raises(_Crash):
            train(tiny_cfg(), run)
    _damage_like_a_crash(run)
    before = tree_digest(run)
    with pytest.raises(RunDirError, match=r"run/config.yaml is damaged \(.*\), and this configuration \(hash \w+\) "
                                          r"is not the one the run's checkpoint was written with"):
        train(tiny_cfg(optim={"lr": 0.02}), run)
    assert tree_digest(run) == before


def test_a_damaged_metric_line_before_the_last_is_named(tiny_cfg, tmp_path, monkeypatch):
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _crash_after_step_3(patch)
        with pytest.raises(_Crash):
            train(tiny_cfg(), run)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    before = tree_digest(run)
    with pytest.raises(RunDirError, match=r"metrics.jsonl:2: not a JSON record \('garbage'\)"):
        train(tiny_cfg(), run)
    assert tree_digest(run) == before


def test_atomic_writes_fsync_the_file_before_and_the_folder_after_the_rename(tmp_path, monkeypatch):
    calls = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync",
                        lambda fd: calls.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}"))) or fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: calls.append(("replace", Path(b).name)) or replace(a, b))
    save_atomic({"format": FORMAT, "step": 1}, tmp_path / "checkpoint.pt")
    write_json_atomic(tmp_path / "meta.json", {"status": "running"})
    assert calls == [("fsync", False), ("replace", "checkpoint.pt"), ("fsync", True),
                     ("fsync", False), ("replace", "meta.json"), ("fsync", True)]


def test_an_interrupted_atomic_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "config.yaml"
    target.write_text("old")

    def fail_half_way(fh):
        fh.write(b"new, but")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, fail_half_way)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


# --- 8. a checkpoint that carries code ---------------------------------------------------------------------

class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_checkpoint_is_refused_for_safety_and_runs_nothing(tiny_cfg, tmp_path):
    run, marker = tmp_path / "run", tmp_path / "code-ran"
    train(tiny_cfg(train={"iters": 3}), run)
    ckpt = load_checkpoint(run / "checkpoint.pt")
    torch.save({**ckpt, "payload": _RunsCode(marker)}, run / "checkpoint.pt")
    before = tree_digest(run)
    with pytest.raises(CheckpointError) as refused:
        train(tiny_cfg(train={"iters": 3}), run)
    message = str(refused.value)
    assert re.search(r"checkpoint.pt: holds Python objects other than tensors \(\w+.system\); refused for safety",
                     message)
    assert "weights_only=False" not in message and "corrupt" not in message
    assert not marker.exists() and tree_digest(run) == before


def test_pretrained_weights_carrying_code_are_refused_the_same_way(tmp_path):
    torch.save({"conv1.weight": torch.zeros(1), "x": _RunsCode(tmp_path / "code-ran")}, tmp_path / "w.pth")
    with pytest.raises(CheckpointKeyError, match=r"model.pretrained: .*w.pth: holds Python objects other than tensors"):
        build_network(ModelConfig(width=8, pretrained=str(tmp_path / "w.pth")), 3)
    assert not (tmp_path / "code-ran").exists()
