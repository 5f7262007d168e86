"""CW-BASS and FARCLUSS through the engine: a crash mid-training and a rerun end with the same weights and method
state (FARCLUSS's class-frequency estimate and prototypes) as an uninterrupted run, on the CPU, and the
diagnostics reach metrics.jsonl."""
import json

import pytest
import torch

from reprokit.configure import from_dict
from reprokit.engine.checkpoint import load_checkpoint
from reprokit.engine.train import train
from reprokit.methods.cw_bass import CWBASS
from reprokit.methods.farcluss import FARCLUSS
from tests.conftest import tiny_raw

CASES = {
    "cw_bass": (CWBASS, {"name": "cw_bass"}, {"diag/threshold", "diag/kept", "diag/boundary", "diag/acc/kept"}),
    "cw_bass_single_view": (CWBASS, {"name": "cw_bass", "views": "single"}, {"diag/threshold", "diag/acc/teacher"}),
    "farcluss": (FARCLUSS, {"name": "farcluss"}, {"diag/entropy_weight", "diag/class_weight/0", "diag/acc/in_fuzzy",
                                                  "loss/pull", "loss/push"}),
}


class Crash(RuntimeError):
    pass


@pytest.mark.parametrize("case", sorted(CASES))
def test_crash_and_rerun_resume_exactly(digits_root, tmp_path, monkeypatch, case):
    cls, method, logged = CASES[case]
    raw = tiny_raw(digits_root, method={**method, "ema_momentum": 0.5, "unsup_ramp": 0.0}, optim={"lr": 0.05},
                   train={"iters": 8, "ckpt_every": 2, "log_every": 1})
    train(from_dict(raw), tmp_path / "straight")
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
    if cls is FARCLUSS:  # the state beyond the networks has moved away from its start
        assert not torch.allclose(a["class_freq"], torch.full_like(a["class_freq"], 1 / 11))
        assert a["prototypes"].abs().sum() > 0
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    records = [json.loads(x) for x in (tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 9))
    assert logged <= set(records[-1])
