"""The pseudo-label inspector driven headless: every control changes what is shown as it should, and
display-only changes never rerun the network."""
import numpy as np
import pytest
import torch

from reprokit.configure import from_dict
from reprokit.viz.palette import display_palette
from reprokit.engine.train import train
from reprokit.inspect import PseudoLabelInspector
from reprokit.inspect.core import MapCache, compose
from reprokit.methods.display import HeatLayer, LabelLayer
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
    pal = display_palette("digits")
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


# --- the layers of weakly supervised methods ---------------------------------------------------------------
C, H, W = 4, 4, 4
CPL = torch.tensor([[0, 1, 2, 255], [3, 3, 255, 0], [1, 2, 0, 0], [255, 255, 1, 2]])
SPARSE = torch.full((H, W), C).index_put_((torch.tensor([0, 2, 3]), torch.tensor([1, 3, 0])), torch.tensor([2, 1, 3]))
SPARSE[3, 3] = 255  # padding: not drawn, like the unlabeled pixels


class FakeWeakMethod(torch.nn.Module):
    """Fixed maps for a label layer and per-class heat maps of the K = C - 1 foreground classes (as CAMs);
    records every batch it is given."""

    num_classes = C
    inspector_layers = (LabelLayer("fake CPL", "cpl"), HeatLayer("fake CAMs", "cams", per_class=True, first_class=1))

    def __init__(self):
        super().__init__()
        self.batches = []

    def pseudo_labels(self, batch):
        self.batches.append(batch)
        b = len(batch["image"])
        yx = torch.arange(H)[:, None] + torch.arange(W)
        cams = torch.stack([((yx + k) % 4) / 4 for k in range(C - 1)])  # quarters: exact in float16
        return {"teacher_label": torch.zeros(b, H, W, dtype=torch.long), "confidence": torch.ones(b, H, W),
                "student_pred": torch.zeros(b, H, W, dtype=torch.long), "cpl": CPL.expand(b, H, W),
                "cams": cams.expand(b, C - 1, H, W)}


def weak_item(with_weak: bool = True) -> dict:
    item = {"image": torch.zeros(3, H, W), "valid": torch.ones(H, W, dtype=torch.bool),
            "hidden_mask": CPL.masked_fill(CPL == 255, 1)}
    if with_weak:
        item.update(sparse=SPARSE.clone(), image_labels=torch.tensor([True, True, False, True]),
                    crop_labels=torch.tensor([True, False, False, True]))
    return item


def fake_inspector(tmp_path, with_weak: bool = True, clear: bool = True):
    """The inspector over three grey images with the fake method's maps; ``clear``: no layer on, opacity 1."""
    cache = MapCache(FakeWeakMethod(), {"train": [weak_item(with_weak) for _ in range(3)]}, {"final": dict},
                     lambda split, i: np.full((H, W, 3), 100, np.uint8), batch_size=2, cutmix_boxes=0)
    insp = PseudoLabelInspector(cache, ["bg", "one", "two", "three"], "digits", export_dir=tmp_path, scale=1)
    if not clear:
        return insp
    for t in insp.layers.values():
        t.value = False
    insp.opacity.value = 1.0
    return insp


def viridis(values):
    from matplotlib import colormaps

    return (colormaps["viridis"](np.asarray(values, np.float32))[..., :3] * 255).astype(np.uint8)


def test_label_layer_draws_class_ids_in_the_palette_and_ignore_in_its_colour(tmp_path):
    insp = fake_inspector(tmp_path)
    insp.layers["fake CPL"].value = True
    pal, view = display_palette("digits"), insp.rendered()
    assert np.array_equal(view, pal[CPL.numpy().astype(np.uint8)])
    assert tuple(view[0, 2]) == (230, 25, 75) and tuple(view[0, 3]) == (224, 224, 192)  # class 2 (digit 1); ignore
    insp.classes.value = (1,)  # other classes hidden, the ignore band kept
    view = insp.rendered()
    assert tuple(view[0, 2]) == (100, 100, 100) and tuple(view[0, 1]) == tuple(pal[1])
    assert tuple(view[0, 3]) == (224, 224, 192) and "ignored" in insp.legend.value
    stats, where = insp.current_stats(), CPL != 255
    assert stats["pixels fake CPL"] == int(where.sum())
    assert stats["accuracy fake CPL"] == pytest.approx(1.0)  # the ground truth is the CPL outside its band


def test_heat_layer_class_picker_chooses_the_drawn_class(tmp_path):
    insp = fake_inspector(tmp_path)
    assert insp.heat_class.value == 1  # the stack's first class
    passes = insp.cache.forward_passes
    insp.layers["fake CAMs"].value = True
    cams = insp.current().heats["fake CAMs"]
    assert cams.shape == (C - 1, H, W)
    first = insp.rendered()
    assert np.array_equal(first, viridis(cams[0]))
    insp.heat_class.value = 3  # channel 2
    assert np.array_equal(insp.rendered(), viridis(cams[2])) and not np.array_equal(insp.rendered(), first)
    insp.heat_class.value = 0  # background: no CAM, nothing drawn
    assert np.array_equal(insp.rendered(), insp.current().image)
    assert insp.cache.forward_passes == passes  # a display change


def test_sparse_overlay_colours_exactly_the_labeled_pixels(tmp_path):
    insp = fake_inspector(tmp_path, clear=False)
    assert insp.layers["sparse labels"].value  # on whenever the images have sparse labels
    for t in insp.layers.values():
        t.value = False
    insp.layers["sparse labels"].value = True
    insp.opacity.value = 0.2  # the marks are drawn opaque
    view, labeled = insp.rendered(), (SPARSE < C).numpy()
    assert np.array_equal(view[labeled], display_palette("digits")[SPARSE.numpy()[labeled]])
    assert (view[~labeled] == 100).all() and labeled.sum() == 3


def test_map_cache_hands_the_weak_labels_to_the_method(tmp_path):
    insp = fake_inspector(tmp_path)
    batch = insp.cache.method.batches[-1]
    assert set(batch) == {"image", "valid", "sparse", "image_labels", "crop_labels"}
    assert torch.equal(batch["sparse"], SPARSE.expand(2, H, W))
    assert torch.equal(batch["image_labels"], torch.tensor([[True, True, False, True]] * 2))
    bare = fake_inspector(tmp_path, with_weak=False)
    assert set(bare.cache.method.batches[-1]) == {"image", "valid"} and "sparse labels" not in bare.layers
    assert bare.current().sparse is None


def test_weak_run_shows_its_sparse_labels_and_the_method_reads_them(digits_root, tmp_path, monkeypatch):
    """An AGMM run on points: the weakly labeled images come with the point labels training read, AGMM gets them
    (its labeled pixels are the "sparse label" category) and the GMM maps come through label and heat layers."""
    from reprokit.data.weak_source import WeakLabels
    from reprokit.methods.agmm import AGMM

    declared = (LabelLayer("AGMM: GMM pseudo-label", "gmm_label"),
                HeatLayer("AGMM: GMM response per class", "gmm", per_class=True))
    monkeypatch.setattr(AGMM, "inspector_layers", tuple(dict.fromkeys(AGMM.inspector_layers + declared)))
    raw = tiny_raw(digits_root, method={"name": "agmm"}, data={"label_kind": "points"},
                   train={"iters": 2, "ckpt_every": 2})
    cfg = from_dict(raw)
    train(cfg, tmp_path / "run")
    insp = PseudoLabelInspector.from_run(tmp_path / "run", export_dir=tmp_path / "export", scale=1)
    assert list(insp.split.options) == ["labeled", "unlabeled", "val"]
    maps = insp.current()
    ds = insp.cache.splits["labeled"]
    sparse, _ = WeakLabels(cfg.data).read(ds.samples[0], None)
    labeled = sparse["sparse"] < cfg.data.num_classes
    assert labeled.any() and np.array_equal(maps.sparse != 255, labeled)
    assert np.array_equal(maps.categories["AGMM: GMM vs network"] == 0, labeled)
    assert np.array_equal(maps.gt, ds.items[0]["hidden_mask"].numpy())  # the dense mask: displayed truth only
    assert maps.heats["AGMM: GMM response per class"].shape == (cfg.data.num_classes, *maps.teacher.shape)
    assert set(np.unique(maps.labels["AGMM: GMM pseudo-label"])) <= set(np.flatnonzero(
        np.bincount(sparse["sparse"][labeled], minlength=cfg.data.num_classes))) | {255}
    for t in insp.layers.values():
        t.value = False
    insp.layers["sparse labels"].value = True
    view = insp.rendered()
    assert np.array_equal(view[labeled], display_palette("digits")[sparse["sparse"][labeled].astype(np.uint8)])
    assert np.array_equal(view[~labeled], maps.image[~labeled])
    insp.split.value = "val"  # no weak labels there: no sparse marks, no prototypes
    assert insp.current().sparse is None and (insp.current().labels["AGMM: GMM pseudo-label"] == 255).all()


def test_cosa_maps_use_the_image_labels_and_come_through_the_new_layers(tiny_cfg, tmp_path, monkeypatch):
    """Un-augmented image-labeled items hand CoSA their classes; its CPL and per-class CAMs (foreground classes
    only, so channel k is class k + 1) are drawn by a label layer and a heat layer."""
    from reprokit.data.datasets import resolve_splits
    from reprokit.data.weak_items import WeakLabeledImages
    from reprokit.methods import build_method
    from reprokit.methods.cosa import CoSA

    declared = (LabelLayer("CoSA CPL", "cpl"), HeatLayer("CoSA CAM per class", "cams", per_class=True, first_class=1))
    monkeypatch.setattr(CoSA, "inspector_layers", tuple(dict.fromkeys(CoSA.inspector_layers + declared)))
    cfg = tiny_cfg(method={"name": "cosa"}, data={"label_kind": "image"})
    torch.manual_seed(0)
    method = build_method(cfg, cfg.data.num_classes).eval()
    ds = WeakLabeledImages(resolve_splits(cfg.data).labeled[:2], cfg.data)
    state = method.state_dict()
    cache = MapCache(method, {"labeled": ds}, {"init": lambda: state}, lambda s, i: np.zeros((32, 32, 3), np.uint8),
                     batch_size=2, cutmix_boxes=0)
    insp = PseudoLabelInspector(cache, [str(c) for c in range(cfg.data.num_classes)], "digits", scale=1,
                                export_dir=tmp_path)
    want = method.pseudo_labels({key: torch.stack([ds[i][key] for i in range(2)])
                                 for key in ("image", "valid", "image_labels")})
    maps = insp.current()
    assert np.array_equal(maps.labels["CoSA CPL"], want["cpl"][0].numpy())
    assert set(np.unique(maps.labels["CoSA CPL"])) <= {0, 255, *np.flatnonzero(ds[0]["image_labels"].numpy())}
    assert maps.heats["CoSA CAM per class"].shape == (cfg.data.num_classes - 1, 32, 32)
    for t in insp.layers.values():
        t.value = False
    insp.opacity.value = 1.0
    insp.layers["CoSA CAM per class"].value = True
    insp.heat_class.value = 3
    assert np.array_equal(insp.rendered(), viridis(maps.heats["CoSA CAM per class"][2]))
