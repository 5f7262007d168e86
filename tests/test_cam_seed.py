"""The CAM seed instrument: scores of an image-label run's CAM pseudo-masks against hidden masks and against
all-background, and the admission rule of an image-label protocol."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from reprokit.cli import main
from reprokit.configure import from_dict
from reprokit.data.datasets import resolve_splits
from reprokit.engine.train import train
from reprokit.engine.rundir import RunDirError
from reprokit.runs.cam_seed import SEED_FILE, check_admissible, measure_cam_seed, seed_counts, seed_scores
from tests.conftest import tiny_raw

IGNORE = 255


def test_counts_and_scores_by_hand():
    seed = torch.tensor([[[0, 1, 255], [2, 0, 0]]])
    truth = torch.tensor([[[0, 1, 1], [0, 0, 255]]])
    valid = torch.tensor([[[True, True, True], [True, True, False]]])
    counts = seed_counts(seed, truth, valid, IGNORE)
    # known: 5 pixels (one invalid, none unknown among valid ones); decided: 4 of them
    assert counts == {"valid": 5, "decided": 4, "correct": 3, "background_decided": 3, "background": 3,
                      "fg_intersection": 1, "fg_union": 3}
    scores = seed_scores(counts)
    assert scores["coverage"] == 0.8 and scores["accuracy"] == 0.75 and scores["fg_iou"] == pytest.approx(1 / 3)
    assert scores["all_background"]["accuracy"] == 0.75 and scores["all_background"]["accuracy_all"] == 0.6


@pytest.fixture(scope="module")
def cam_run(tmp_path_factory, digits_root):
    raw = tiny_raw(digits_root, method={"name": "cam", "stage1": 0.5}, data={"label_kind": "image"},
                   train={"iters": 4, "ckpt_every": 4})
    out = tmp_path_factory.mktemp("seed") / "cam"
    train(from_dict(raw), out)
    return out


def test_a_cam_run_is_scored_on_its_training_images(cam_run):
    result = measure_cam_seed(cam_run)
    assert json.loads((cam_run / SEED_FILE).read_text()) == json.loads(json.dumps(result))
    samples = resolve_splits(from_dict(yaml.safe_load((cam_run / "config.yaml").read_text())).data).labeled
    assert result["images"] == len(samples) > 0
    # all-background on every valid pixel: the share of background in the hidden masks, read from the files
    masks = [np.asarray(Image.open(s.mask)) for s in samples]
    background = sum(int((m == 0).sum()) for m in masks) / sum(int((m != IGNORE).sum()) for m in masks)
    assert result["all_background"]["accuracy_all"] == pytest.approx(background)
    assert 0 < result["coverage"] <= 1 and 0 <= result["accuracy"] <= 1 and 0 <= result["fg_iou"] <= 1
    assert result["counts"]["correct"] == round(result["accuracy"] * result["counts"]["decided"])


def test_runs_without_a_cam_seed_are_refused_by_name(tmp_path, digits_root, capsys):
    train(from_dict(tiny_raw(digits_root, train={"iters": 2, "ckpt_every": 2})), tmp_path / "sup")
    with pytest.raises(RunDirError, match=r"sup: method 'supervised' trains on no CAM pseudo-masks"):
        measure_cam_seed(tmp_path / "sup")
    assert main(["cam-seed", str(tmp_path / "sup")]) == 2 and "trains on no CAM" in capsys.readouterr().err


def test_the_admission_rule_names_the_runs_whose_seed_loses_to_all_background(tmp_path, cam_run, capsys):
    for name, accuracy, seed in (("wins", 0.9, "teacher_label"), ("loses", 0.8, "teacher_label"), ("cosa", 0.9, "cpl")):
        (tmp_path / name).mkdir()
        (tmp_path / name / SEED_FILE).write_text(json.dumps({"seed": seed, "accuracy": accuracy,
                                                             "all_background": {"accuracy": 0.85}}))
    assert check_admissible([tmp_path / "wins", tmp_path / "loses"]) == [str(tmp_path / "loses")]
    with pytest.raises(RunDirError, match="cosa: not a CAM baseline run"):
        check_admissible([tmp_path / "wins", tmp_path / "cosa"])
    with pytest.raises(RunDirError, match="reprokit cam-seed"):
        check_admissible([tmp_path])
    code = main(["cam-seed", str(cam_run), "--check"])
    seed = json.loads((cam_run / SEED_FILE).read_text())
    assert code == (0 if seed["accuracy"] > seed["all_background"]["accuracy"] else 1)
    assert "CAM seed" in capsys.readouterr().out


def test_cosa_is_scored_on_its_assignment_cpl_over_the_same_images(tmp_path, digits_root, cam_run):
    raw = tiny_raw(digits_root, method={"name": "cosa", "cls_only": 0.5}, data={"label_kind": "image"},
                   train={"iters": 2, "ckpt_every": 2})
    train(from_dict(raw), tmp_path / "cosa")
    cosa, cam = measure_cam_seed(tmp_path / "cosa"), measure_cam_seed(cam_run)
    assert (cosa["seed"], cam["seed"]) == ("cpl", "teacher_label")
    assert cosa["images"] == cam["images"] and cosa["all_background"]["accuracy_all"] == \
        cam["all_background"]["accuracy_all"]


def test_the_placement_script_scores_the_same_classifier_by_both_conventions(cam_run, capsys):
    """scripts/cam_seed_placement.py: its grid placement is the package's seed; the upsampling convention
    moves the masks (another seed on the same checkpoint); the run's records are left as they were."""
    import runpy

    placement = runpy.run_path(str(Path(__file__).resolve().parents[1] / "scripts" / "cam_seed_placement.py"))
    before = sorted(p.name for p in cam_run.iterdir())
    scores = placement["placements"](cam_run)
    assert sorted(p.name for p in cam_run.iterdir()) == before
    packaged = measure_cam_seed(cam_run)
    assert scores["grid"]["counts"] == packaged["counts"]
    assert scores["align_corners=False"]["counts"] != packaged["counts"]
    assert scores["align_corners=False"]["counts"]["valid"] == packaged["counts"]["valid"]
