"""CW-BASS and FARCLUSS through the engine: a crash mid-training and a rerun end with the same weights and method
state (FARCLUSS's class-frequency estimate and prototypes) as an uninterrupted run, on the CPU, and the
diagnostics reach metrics.jsonl."""
import pytest
import torch

from reprokit.methods.cw_bass import CWBASS
from reprokit.methods.farcluss import FARCLUSS
from tests.conftest import crash_and_rerun, tiny_raw

CASES = {
    "cw_bass": (CWBASS, {"name": "cw_bass"}, {"diag/threshold", "diag/kept", "diag/boundary", "diag/acc/kept"}),
    "cw_bass_single_view": (CWBASS, {"name": "cw_bass", "views": "single"}, {"diag/threshold", "diag/acc/teacher"}),
    "farcluss": (FARCLUSS, {"name": "farcluss"}, {"diag/entropy_weight", "diag/class_weight/0", "diag/acc/in_fuzzy",
                                                  "loss/pull", "loss/push"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_crash_and_rerun_resume_exactly(digits_root, tmp_path, monkeypatch, case):
    cls, method, logged = CASES[case]
    raw = tiny_raw(digits_root, method={**method, "ema_momentum": 0.5, "unsup_ramp": 0.0}, optim={"lr": 0.05},
                   train={"iters": 8, "ckpt_every": 2, "log_every": 1})
    a, b, records = crash_and_rerun(raw, tmp_path, monkeypatch)
    if cls is FARCLUSS:  # the state beyond the networks has moved away from its start
        assert not torch.allclose(a["class_freq"], torch.full_like(a["class_freq"], 1 / 11))
        assert a["prototypes"].abs().sum() > 0
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert [r["step"] for r in records] == list(range(1, 9))
    assert logged <= set(records[-1])
