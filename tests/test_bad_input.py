"""Bad data and bad settings (issue 16): every error names the culprit and what was expected, and nothing
already on disk changes. Ordered as the issue: data loss first."""
from __future__ import annotations

import pytest
from PIL import Image

from reprokit.cli import main as cli_main
from reprokit.data.digits import BUILD_MARK, build_digit_scenes, ensure_digit_scenes
from reprokit.data.errors import DataRootError
from reprokit.engine.train import train
from tests.conftest import TINY_SPEC, tree_digest


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
