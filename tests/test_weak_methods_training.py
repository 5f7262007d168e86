"""The weakly supervised methods through the engine: a crash mid-training and a rerun end with the same weights
and method state (CoSA's threshold-search queue and thresholds, both networks of the CAM baseline) as an
uninterrupted run, on the CPU, and their diagnostics reach metrics.jsonl."""
import pytest
import torch

from tests.conftest import crash_and_rerun, tiny_raw

CASES = {  # method block, label kind, metrics that must be logged
    "agmm": ({"name": "agmm"}, "points", {"loss/seg", "loss/gmm_pred", "loss/proto", "loss/cls", "diag/acc/gmm"}),
    "partial_ce": ({"name": "supervised"}, "scribbles", {"loss/sup"}),
    "cosa": ({"name": "cosa", "ema_momentum": 0.5}, "image", {"loss/cls", "loss/seg", "loss/cam"}),
    "cam": ({"name": "cam"}, "image", {"loss/seg", "diag/acc/cam"}),  # the crash at step 5 is in stage 2
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_crash_and_rerun_resume_exactly(digits_root, tmp_path, monkeypatch, case):
    method, kind, logged = CASES[case]
    raw = tiny_raw(digits_root, method=method, optim={"lr": 0.05}, data={"label_kind": kind},
                   train={"iters": 8, "ckpt_every": 2, "log_every": 1})
    a, b, records = crash_and_rerun(raw, tmp_path, monkeypatch)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert [r["step"] for r in records] == list(range(1, 9))
    assert logged <= set(records[-1]), logged - set(records[-1])
