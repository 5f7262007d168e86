"""The weakly supervised methods through the engine: a crash mid-training and a rerun end with the same weights
and method state (CoSA's threshold-search queue and thresholds, both networks of the CAM baseline) as an
uninterrupted run, on the CPU, and their diagnostics reach metrics.jsonl."""
import json

import pytest
import torch

from reprokit.configure import from_dict
from reprokit.engine.checkpoint import load_checkpoint
from reprokit.engine.train import train
from reprokit.methods import registry
from tests.conftest import tiny_raw

CASES = {  # method block, label kind, metrics that must be logged
    "agmm": ({"name": "agmm"}, "points", {"loss/seg", "loss/gmm_pred", "loss/proto", "loss/cls", "diag/acc/gmm"}),
    "partial_ce": ({"name": "supervised"}, "scribbles", {"loss/sup"}),
    "cosa": ({"name": "cosa", "ema_momentum": 0.5}, "image", {"loss/cls", "loss/seg", "loss/cam"}),
    "cam": ({"name": "cam"}, "image", {"loss/seg", "diag/acc/cam"}),  # the crash at step 5 is in stage 2
}


class Crash(RuntimeError):
    pass


@pytest.mark.parametrize("case", sorted(CASES))
def test_crash_and_rerun_resume_exactly(digits_root, tmp_path, monkeypatch, case):
    method, kind, logged = CASES[case]
    raw = tiny_raw(digits_root, method=method, optim={"lr": 0.05}, data={"label_kind": kind},
                   train={"iters": 8, "ckpt_every": 2, "log_every": 1})
    train(from_dict(raw), tmp_path / "straight")
    cls = registry()[method["name"]].cls
    original = cls.training_step

    def crash_at_5(self, labeled, unlabeled, step):
        if step == 5:
            raise Crash
        return original(self, labeled, unlabeled, step)

    monkeypatch.setattr(cls, "training_step", crash_at_5)
    with pytest.raises(Crash):
        train(from_dict(raw), tmp_path / "crashed")
    monkeypatch.setattr(cls, "training_step", original)
    train(from_dict(raw), tmp_path / "crashed")
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["method"]
    b = load_checkpoint(tmp_path / "crashed" / "checkpoint.pt")["method"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    records = [json.loads(x) for x in (tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 9))
    assert logged <= set(records[-1]), logged - set(records[-1])
