"""Data sets declare themselves (reprokit.data.DataSet) and nothing else names one."""
import dataclasses

import pytest

import reprokit.data as data
from reprokit.config import ConfigError
from reprokit.configure import from_dict
from reprokit.data.datasets import class_names
from reprokit.data.palette import palette_for
from reprokit.data.weak_labels import weak_label_path


def test_each_data_set_declares_itself_once():
    sets = data.registry()
    assert set(sets) == {"digits", "voc", "cityscapes"}
    assert [len(sets[n].class_names) for n in ("digits", "voc", "cityscapes")] == [11, 21, 19]
    assert sets["digits"].prepare is not None and sets["digits"].simulated_weak_labels
    assert sets["voc"].prepare is None and not sets["voc"].simulated_weak_labels
    assert tuple(palette_for("cityscapes")[0]) == (128, 64, 128) and tuple(palette_for("voc")[1]) == (128, 0, 0)
    assert weak_label_path("/r", "cityscapes", "clicks", "aachen/aachen_000000_000019", clicks=20).as_posix() == \
        "/r/20clicks/aachen_000000_000019_gtFine_labelTrainIds.png"
    assert weak_label_path("/r", "digits", "points", "s1").as_posix() == "/r/point/segcls/s1.png"
    with pytest.raises(ValueError, match="no public points labels are known for Cityscapes"):
        weak_label_path("/r", "cityscapes", "points", "a")


def test_a_new_data_set_is_its_entry(monkeypatch):
    """One more entry, and a config can name it: no other code decides by a data set's name."""
    tiny = dataclasses.replace(data.registry()["digits"], name="tiny", class_names=("bg", "fg"))
    with_tiny = {**data.registry(), "tiny": tiny}
    monkeypatch.setattr(data, "registry", lambda: with_tiny)
    monkeypatch.setattr("reprokit.configure.datasets", lambda: with_tiny)
    cfg = from_dict({"data": {"dataset": "tiny", "num_classes": 2}, "train": {"iters": 1}})
    assert class_names(cfg.data) == ["bg", "fg"]
    with pytest.raises(ConfigError, match=r"config key 'data.dataset': 'nope' is not one of \['cityscapes', "
                                          r"'digits', 'tiny', 'voc'\]"):
        from_dict({"data": {"dataset": "nope"}, "train": {"iters": 1}})
