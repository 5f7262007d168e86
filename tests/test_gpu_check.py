"""benchmarks/gpu_check.py, the one-command device check, on the CPU at a tiny size: it builds its synthetic VOC
tree, trains through the ordinary trainer, counts FLOPs, extrapolates the Table 2 cell and runs torchrun."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402


def test_synthetic_tree_is_read_as_voc(tmp_path):
    from reprokit.data.voc import default_lists, read_mask

    root = gpu_check.write_voc_tree(tmp_path / "VOC2012", 5, (40, 30))
    lists = default_lists(root, "aug")
    assert lists["train"].name == "train_aug.txt" and len(lists["train"].read_text().split()) == 3
    mask = read_mask(root / "SegmentationClassAug" / "2007_000004.png")
    assert mask.shape == (30, 40) and mask.max() < 21 and (mask > 0).any()
    assert Image.open(root / "JPEGImages" / "2007_000004.jpg").size == (40, 30)


@pytest.mark.slow
def test_tiny_check_measures_and_extrapolates(tmp_path):
    out = tmp_path / "check.json"
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--tiny", "--steps", "3", "--out", str(out),
                           "--work", str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["steps_measured"] == 2 and r["seconds_per_step"] > 0
    assert np.isclose(r["steps_per_second"], 1 / r["seconds_per_step"], rtol=1e-2)
    assert r["flops_per_step"] > 1e8 and r["peak_memory_gib"] > 0
    from reprokit.configure import load_config
    from reprokit.engine.loop import total_iterations

    iters = total_iterations(load_config(gpu_check.CONFIG), 1323, 10582 - 1323, 1)
    assert r["table2_cell_iterations"] == iters
    assert np.isclose(r["table2_cell_gpu_hours_estimate"], iters * r["seconds_per_step"] / 3600, atol=0.01)
    assert r["torchrun_2_processes"]["ok"], r["torchrun_2_processes"]["tail"]
