"""The pseudo-label inspector driven headless: every control changes what is shown as it should, and
display-only changes never rerun the network."""
import numpy as np
import pytest
import torch

from reprokit.configure import from_dict
from reprokit.data.palette import palette_for
from reprokit.engine.train import train
from reprokit.inspect import PseudoLabelInspector
from reprokit.inspect.core import compose
from tests.conftest import tiny_raw


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, digits_root):
    raw = tiny_raw(digits_root, method={"name": "stpg", "proj_dim": 16, "bank_size": 8},
                   train={"iters": 6, "ckpt_every": 3, "snapshot_every": 3})
    out = tmp_path_factory.mktemp("insp") / "run"
    train(from_dict(raw), out)
    return out


@pytest.fixture
def insp(run_dir, tmp_path):
    return PseudoLabelInspector.from_run(run_dir, export_dir=tmp_path / "export", scale=1)


def test_checkpoints_and_splits(insp):
    assert list(insp.checkpoint.options) == ["step 3", "step 6", "final"]
    assert list(insp.split.options) == ["unlabeled", "val"]
    assert insp.index.max == len(insp.cache.splits["unlabeled"]) - 1


def test_image_change_recomputes_display_change_does_not(insp):
    passes = insp.cache.forward_passes
    before = insp.view.value
    insp.index.value = insp.cache.batch_size  # next batch: one more forward pass
    assert insp.cache.forward_passes == passes + 1 and insp.view.value != before
    insp.index.value = insp.cache.batch_size + 1  # same batch: cached
    for toggle in insp.layers.values():
        toggle.value = not toggle.value
    insp.opacity.value = 0.3
    insp.threshold.value = 0.5
    assert insp.cache.forward_passes == passes + 1
    assert set(insp.timings) == {"image", "display"}


def test_layers_show_the_arrays_behind_them(insp):
    maps = insp.current()
    for t in insp.layers.values():
        t.value = False
    assert np.array_equal(insp.rendered(), maps.image)  # no layer: the image itself
    insp.layers["teacher pseudo-label"].value = True
    insp.opacity.value = 1.0
    pal = palette_for("digits")
    assert np.array_equal(insp.rendered(), pal[maps.teacher.astype(np.uint8)])
    insp.layers["teacher pseudo-label"].value = False
    insp.layers["selection category"].value = True
    category = maps.categories["selection category"]
    assert set(np.unique(category)) <= {0, 1, 2} and np.array_equal(category == 0, maps.teacher == maps.student)
    insp.opacity.value = 1.0
    assert np.array_equal(insp.rendered(), np.array([[46, 160, 67], [214, 39, 40], [255, 187, 40]],
                                                    np.uint8)[category])


def test_class_filter_hides_other_classes(insp):
    for t in insp.layers.values():
        t.value = False
    insp.layers["teacher pseudo-label"].value = True
    insp.opacity.value = 1.0
    maps = insp.current()
    shown_class = int(np.bincount(maps.teacher.ravel()).argmax())
    insp.classes.value = (shown_class,)
    view = insp.rendered()
    other = maps.teacher != shown_class
    assert np.array_equal(view[other], maps.image[other])
    assert not np.array_equal(view[~other], maps.image[~other]) or (~other).sum() == 0


def test_threshold_keeps_fewer_pixels_monotonically(insp):
    kept = []
    for t in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        insp.threshold.value = t
        kept.append(insp.current_stats()["kept"])
    assert kept == sorted(kept, reverse=True) and kept[0] == insp.current_stats()["pixels"]


def test_statistics_equal_direct_computation(insp):
    insp.threshold.value = 0.3
    maps = insp.current()
    stats = insp.current_stats()
    valid = maps.gt != 255
    right = maps.teacher == maps.gt
    for c, name in enumerate(["consistent", "highly mismatched", "low mismatched"]):
        where = valid & (maps.categories["selection category"] == c)
        want = right[where].mean() if where.any() else float("nan")
        assert stats[f"accuracy {name}"] == pytest.approx(want, nan_ok=True)
    assert stats["kept"] == int(((maps.confidence >= 0.3) & valid).sum())
    assert np.array_equal(stats["histogram"], np.bincount(maps.teacher[valid], minlength=11)[:11])


def test_pseudo_labels_match_the_method(insp, run_dir):
    from reprokit.engine.reeval import load_trained_method

    _, method = load_trained_method(run_dir)
    method.eval()
    ds = insp.cache.splits["val"]
    insp.split.value = "val"
    insp.checkpoint.value = "final"
    insp.index.value = 0
    b = insp.cache.batch_size
    batch = {"image": torch.stack([ds[i]["image"] for i in range(b)]),
             "valid": torch.stack([ds[i]["valid"] for i in range(b)])}
    want = method.pseudo_labels(batch)
    assert np.array_equal(insp.current().teacher, want["teacher_label"][0].numpy())
    assert np.allclose(insp.current().scores, want["scores"].numpy())


def test_cutmix_boxes_and_export(insp):
    for t in insp.layers.values():
        t.value = False
    insp.layers["cutmix boxes"].value = True
    maps = insp.current()
    assert maps.boxes.any()
    view = insp.rendered()
    assert (view == 255).all(-1).sum() > 0
    path = insp.export_png()
    from PIL import Image
    assert np.array_equal(np.asarray(Image.open(path)), view)


def test_compose_ignores_unknown_layers():
    maps = type("M", (), {})()
    maps.image = np.zeros((4, 4, 3), np.uint8)
    maps.confidence = np.ones((4, 4))
    assert np.array_equal(compose(maps, ["nothing"], 1.0, "digits", None, 0.0), maps.image)


def test_histogram_panel_lists_the_pseudo_label_classes(insp):
    maps = insp.current()
    present = np.unique(maps.teacher[maps.gt != 255])
    html = insp.stats.value
    assert "pseudo-label classes" in html
    assert all(insp.class_names[c] in html for c in present)
    assert html.count("<tr>") >= len(present)


def test_works_for_mean_teacher_runs(tmp_path, digits_root):
    raw = tiny_raw(digits_root, method={"name": "mean_teacher"}, train={"iters": 3, "ckpt_every": 3})
    train(from_dict(raw), tmp_path / "mt")
    insp = PseudoLabelInspector.from_run(tmp_path / "mt", export_dir=tmp_path / "x", scale=1)
    maps = insp.current()
    assert maps.categories == {} and maps.scores is None
    assert "selection category" not in insp.layers  # a layer only the method that declares it offers
    insp.index.value = 1
    assert insp.view.value and "accuracy" in insp.stats.value


@pytest.mark.parametrize("method, titles", [
    ({"name": "cw_bass"}, ["CW-BASS pixel use"]),
    ({"name": "farcluss"}, ["FARCLUSS top-class mass", "FARCLUSS reliability weight"]),
])
def test_new_methods_show_their_declared_layers(digits_root, tmp_path, method, titles):
    """CW-BASS's kept / boundary / ignored pixels and FARCLUSS's binned top-class mass and reliability come
    through the layers the methods declare; drawn alone at full opacity, a layer is its colours by category."""
    train(from_dict(tiny_raw(digits_root, method=method, train={"iters": 2, "ckpt_every": 2})), tmp_path / "run")
    insp = PseudoLabelInspector.from_run(tmp_path / "run", export_dir=tmp_path / "export", scale=1)
    maps = insp.current()
    for t in insp.layers.values():
        t.value = False
    insp.opacity.value = 1.0
    for layer in insp.cache.layers:
        assert layer.title in titles and layer.title in insp.layers
        insp.layers[layer.title].value = True
        assert np.array_equal(insp.rendered(), np.asarray(layer.colours, np.uint8)[maps.categories[layer.title]])
        insp.layers[layer.title].value = False
    assert len(insp.cache.layers) == len(titles)
