"""Weak labels: image-level sets, simulated points / scribbles / clicks, the public-file readers and the writer."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage as ndi

from reprokit.data import voc
from reprokit.data import weak_label_stats as wls
from reprokit.data import weak_labels as wl
from reprokit.data.errors import DataError, DataRootError, LabelError, MaskError, SplitError
from reprokit.data.palette import voc_palette

C = 4  # classes 0 (background), 1, 2; class 3 absent
EIGHT = np.ones((3, 3), bool)


def _mask() -> np.ndarray:
    """Background 0, an 8x8 square of class 1, class 2 in two components, a short ignore line."""
    m = np.zeros((20, 24), np.uint8)
    m[2:10, 2:10] = 1
    m[3:9, 13:19] = 2
    m[13:18, 14:20] = 2
    m[12, 2:6] = 255
    return m


def _components(m, k):
    labels, n = ndi.label(m == k, structure=EIGHT)
    return [labels == i for i in range(1, n + 1)]


def _on_border(m, y, x):
    """True when one of the 8 neighbours of (y, x) (or the image edge) is of another value."""
    h, w = m.shape
    if y in (0, h - 1) or x in (0, w - 1):
        return True
    return bool((m[y - 1:y + 2, x - 1:x + 2] != m[y, x]).any())


def _png(path, array, mode):
    img = Image.fromarray(np.asarray(array, np.uint8), mode=mode)
    if mode == "P":
        img.putpalette(voc_palette(256).reshape(-1).tolist())
    img.save(path)
    return path


# ------------------------------------------------------------------------------------------ image labels
def test_image_labels_are_the_classes_present():
    m = _mask()
    assert wl.image_labels(m, C).tolist() == [True, True, True, False]
    assert wl.image_labels(torch.from_numpy(m), C).dtype == torch.bool
    assert not wl.image_labels(np.full((3, 3), 255, np.uint8), C).any()
    with pytest.raises(LabelError, match="value 7 at row 0, column 0"):
        wl.image_labels(np.full((2, 2), 7, np.uint8), C)


# ------------------------------------------------------------------------------------------------ points
@pytest.mark.parametrize("seed", range(5))
def test_points_one_per_object_inside_it_and_background_points_apart(seed):
    m = _mask()
    points = wl.simulate_points(m, C, seed)
    assert points.shape == m.shape and points.dtype == np.uint8
    labeled = points < C
    assert set(np.unique(points).tolist()) <= {0, 1, 2, C}
    assert (points[labeled] == m[labeled]).all()  # every point on a pixel of its own class
    for k in (1, 2):
        for comp in _components(m, k):
            assert (labeled & comp).sum() == 1
            y, x = np.argwhere(labeled & comp)[0]
            assert not _on_border(m, y, x)  # these objects have an inside: the point is in it
    bg = np.argwhere(points == 0)
    assert len(bg) == wl.BACKGROUND_POINTS
    for y, x in bg:
        assert not _on_border(m, y, x)  # away from objects, the ignore line and the image edge


def test_points_are_deterministic_per_seed():
    m = _mask()
    np.testing.assert_array_equal(wl.simulate_points(m, C, 3), wl.simulate_points(m, C, 3))
    assert len({wl.simulate_points(m, C, s).tobytes() for s in range(8)}) > 1


def test_points_on_thin_and_tiny_objects_and_options():
    m = np.zeros((9, 9), np.uint8)
    m[1, 1:8] = 1  # one pixel wide: no inside, the point is still on the line
    m[5, 5] = 2  # a single pixel
    points = wl.simulate_points(m, C, 0, background_points=0)
    assert points[1, 1:8].tolist().count(1) == 1 and points[5, 5] == 2
    assert (points < C).sum() == 2  # no background point asked for
    every_class = wl.simulate_points(_mask(), C, 0, background=None)
    assert (every_class == 0).sum() == 1  # background is one component: one point like any object


# --------------------------------------------------------------------------------------------- scribbles
@pytest.mark.parametrize("seed", range(3))
def test_scribbles_stay_in_their_class_and_touch_every_component(seed):
    m = _mask()
    m[0:2, 20:24] = 1  # a second class-1 object in the corner
    scribbles = wl.simulate_scribbles(m, C, seed)
    labeled = scribbles < C
    assert (scribbles[labeled] == m[labeled]).all()
    assert not (labeled & (m == 255)).any()
    for k in (0, 1, 2):
        for comp in _components(m, k):
            stroke = labeled & comp
            assert stroke.any()
            assert ndi.label(stroke, structure=EIGHT)[1] == 1  # one unbroken stroke per component
    square = labeled & (m == 1)
    square[0:2, 20:24] = False
    assert square.sum() >= 4  # a stroke, not a dot, across the 8x8 square
    assert not any(_on_border(m, y, x) for y, x in np.argwhere(square))  # inside the square, off its outline


def test_scribbles_are_deterministic():
    m = _mask()
    np.testing.assert_array_equal(wl.simulate_scribbles(m, C, 1), wl.simulate_scribbles(m, C, 1))


# ------------------------------------------------------------------------------------------------ clicks
def test_clicks_count_classes_and_determinism():
    m = _mask()
    clicks = wl.simulate_clicks(m, C, 0, 20)
    labeled = clicks < C
    assert labeled.sum() == 20
    assert (clicks[labeled] == m[labeled]).all()
    assert set(np.unique(clicks[labeled]).tolist()) == {0, 1, 2}  # every class present gets a click
    np.testing.assert_array_equal(clicks, wl.simulate_clicks(m, C, 0, 20))
    two = wl.simulate_clicks(m, C, 0, 2)  # fewer clicks than classes: the largest classes get them
    assert sorted(two[two < C].tolist()) == [0, 2]  # class 2 has 66 pixels, class 1 64
    tiny = np.array([[1, 255], [0, 0]], np.uint8)
    everything = wl.simulate_clicks(tiny, C, 0, 100)  # more clicks than pixels: every non-ignore pixel
    np.testing.assert_array_equal(everything, [[1, C], [0, 0]])


# ----------------------------------------------------------------------------------------- file paths
def test_weak_label_paths_follow_the_public_layouts(tmp_path):
    assert wl.weak_label_path(tmp_path, "voc", "points", "2007_000032") == tmp_path / "point/segcls/2007_000032.png"
    assert wl.weak_label_path(tmp_path, "voc", "scribbles", "a") == tmp_path / "scribble/seginst/a.png"
    assert wl.weak_label_path(tmp_path, "digits", "clicks", "a", clicks=20) == tmp_path / "20clicks/a.png"
    gt = tmp_path / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"
    want = tmp_path / "100clicks/aachen_000000_000019_gtFine_labelTrainIds.png"
    assert wl.weak_label_path(tmp_path, "cityscapes", "clicks", "aachen_000000_000019", gt) == want
    assert wl.weak_label_path(tmp_path, "cityscapes", "clicks", "aachen_000000_000019") == want
    with pytest.raises(ValueError, match="no public points labels are known for Cityscapes"):
        wl.weak_label_path(tmp_path, "cityscapes", "points", "x")
    with pytest.raises(ValueError, match="'dense' has no sparse label file"):
        wl.weak_label_path(tmp_path, "voc", "dense", "x")


# ----------------------------------------------------------------------------------------------- readers
@pytest.mark.parametrize("mode", ["P", "L"])
@pytest.mark.parametrize("unlabeled", [C, 255])
def test_read_sparse_label_accepts_either_unlabeled_value(tmp_path, mode, unlabeled):
    stored = np.full((3, 4), unlabeled, np.uint8)
    stored[0, 0], stored[2, 3] = 1, 0
    label, found = wl.read_sparse_label(_png(tmp_path / "x.png", stored, mode), C)
    expected = np.full((3, 4), C, np.uint8)
    expected[0, 0], expected[2, 3] = 1, 0
    np.testing.assert_array_equal(label, expected)
    assert found == unlabeled and label.dtype == np.uint8


def test_read_sparse_label_with_both_values_and_with_none(tmp_path):
    both = np.array([[C, 255], [2, C]], np.uint8)  # C unlabeled: 255 stays ignore (as padding)
    label, found = wl.read_sparse_label(_png(tmp_path / "both.png", both, "L"), C)
    assert found == C and label.tolist() == [[C, 255], [2, C]]
    full = np.array([[0, 1], [2, 3]], np.uint8)
    assert wl.read_sparse_label(_png(tmp_path / "full.png", full, "P"), C)[1] is None
    paths = [tmp_path / "both.png", tmp_path / "full.png", _png(tmp_path / "old.png", [[255, 1]], "L")]
    assert wls.survey_unlabeled_values(paths, C) == {C: 1, None: 1, 255: 1}


def test_read_sparse_label_refuses_bad_files(tmp_path):
    bad = _png(tmp_path / "bad_values.png", [[0, 7], [C, 1]], "P")
    with pytest.raises(LabelError, match=r"bad_values.png: label value 7 at row 0, column 1 is neither a class id "
                                         r"0..3, 4"):
        wl.read_sparse_label(bad, C)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(MaskError, match=r"rgb.png: sparse label stored as 'RGB'; expected a palette"):
        wl.read_sparse_label(tmp_path / "rgb.png", C)
    with pytest.raises(MaskError, match=r"missing.png: sparse label file not found"):
        wl.read_sparse_label(tmp_path / "missing.png", C)


def test_image_label_list_round_trip_and_errors(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("# id classes\n2007_000032 0 1\n\n2007_000033 2 2 0\n")
    labels = wl.read_image_label_list(path, C)
    assert {k: v.tolist() for k, v in labels.items()} == {"2007_000032": [True, True, False, False],
                                                          "2007_000033": [True, False, True, False]}
    wl.write_image_label_list(tmp_path / "again.txt", labels)
    again = wl.read_image_label_list(tmp_path / "again.txt", C)
    assert all(torch.equal(again[k], labels[k]) for k in labels)
    cases = [("a 1\nb\n", SplitError, r"bad.txt:2: expected '<id> <class id> \.\.\.', found the id 'b' without"),
             ("a 1 x\n", SplitError, r"bad.txt:1: 'x' is not a class id"),
             ("a 4\n", LabelError, r"bad.txt:1: class id 4 is outside 0..3"),
             ("a 1\na 2\n", SplitError, r"bad.txt:2: duplicate id 'a' \(first on line 1\)"),
             ("\n# nothing\n", SplitError, r"bad.txt: holds no image labels")]
    for text, error, match in cases:
        (tmp_path / "bad.txt").write_text(text)
        with pytest.raises(error, match=match):
            wl.read_image_label_list(tmp_path / "bad.txt", C)


def test_pickled_image_labels_are_refused(tmp_path):
    np.save(tmp_path / "cls_labels.npy", {"a": np.ones(3)}, allow_pickle=True)
    with pytest.raises(DataError, match=r"cls_labels.npy: a NumPy or pickle file; refused for safety.*Convert it"):
        wl.read_image_label_list(tmp_path / "cls_labels.npy", C)
    shutil.copy(tmp_path / "cls_labels.npy", tmp_path / "renamed.txt")  # the content decides, not the name
    with pytest.raises(DataError, match="refused for safety"):
        wl.read_image_label_list(tmp_path / "renamed.txt", C)


# ----------------------------------------------------------------------------------------------- writer
def _small_copy(digits_root, tmp_path, n=4):
    """A few digit scenes copied out of the shared build, so writes never touch it."""
    ids = (digits_root / "ImageSets/Segmentation/train.txt").read_text().split()[:n]
    (tmp_path / "SegmentationClass").mkdir()
    (tmp_path / "ImageSets/Segmentation").mkdir(parents=True)
    for sid in ids:
        shutil.copy(digits_root / "SegmentationClass" / f"{sid}.png", tmp_path / "SegmentationClass")
    (tmp_path / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids) + "\n")
    return tmp_path, ids


@pytest.mark.parametrize("kind", ["points", "scribbles", "clicks"])
def test_written_labels_read_back_as_simulated(digits_root, tmp_path, kind):
    root, ids = _small_copy(digits_root, tmp_path)
    paths = wl.write_simulated_labels(root, ids, kind, 11, seed=5, clicks=20)
    assert paths == [wl.weak_label_path(root, "digits", kind, sid, clicks=20) for sid in ids]
    for sid, path in zip(ids, paths):
        mask = voc.read_mask(root / "SegmentationClass" / f"{sid}.png")
        label, found = wl.read_sparse_label(path, 11)
        assert found == 11 and Image.open(path).mode == "P"
        np.testing.assert_array_equal(label, wl.simulate_sparse_label(kind, mask, 11, wl.sample_seed(5, sid), 20))
    if kind == "clicks":
        assert all(((wl.read_sparse_label(p, 11)[0] < 11).sum() == 20) for p in paths)


def test_writer_is_order_free_idempotent_and_keeps_foreign_files(digits_root, tmp_path):
    root, ids = _small_copy(digits_root, tmp_path)
    paths = wl.write_simulated_labels(root, ids, "points", 11, seed=0)
    first = {p: p.read_bytes() for p in paths}
    stamps = {p: p.stat().st_mtime_ns for p in paths}
    assert wl.write_simulated_labels(root, ids[::-1], "points", 11, seed=0) == paths[::-1]
    assert {p: p.stat().st_mtime_ns for p in paths} == stamps  # same parameters: kept, not rewritten
    manifest = json.loads((root / "point/segcls" / wl.MANIFEST).read_text())
    assert manifest["params"]["seed"] == 0 and manifest["files"] == sorted(f"{sid}.png" for sid in ids)
    wl.write_simulated_labels(root, ids[:2], "points", 11, seed=1)  # new seed: the old simulation is removed
    assert not paths[2].exists() and not paths[3].exists()
    assert json.loads((root / "point/segcls" / wl.MANIFEST).read_text())["files"] == sorted(p.name for p in paths[:2])
    other = tmp_path / "other"
    other.mkdir()
    for sub in ("SegmentationClass", "ImageSets"):
        shutil.copytree(root / sub, other / sub)
    wl.write_simulated_labels(other, ids[::-1], "points", 11, seed=0)
    assert {p: (other / p.relative_to(root)).read_bytes() for p in paths} == first  # list order does not matter
    public = tmp_path / "public"
    (public / "scribble/seginst").mkdir(parents=True)
    (public / "scribble/seginst/2007_000032.png").write_bytes(b"theirs")
    with pytest.raises(DataRootError, match=r"seginst: refusing to write simulated labels.*2007_000032.png"):
        wl.write_simulated_labels(public, ["x"], "scribbles", 11, seed=0)
    assert (public / "scribble/seginst/2007_000032.png").read_bytes() == b"theirs"


def test_writer_out_root_and_cityscapes_masks(tmp_path):
    gt = tmp_path / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"
    gt.parent.mkdir(parents=True)
    ids = np.full((6, 8), 7, np.uint8)  # road (train id 0)
    ids[1:4, 2:6], ids[5, :] = 26, 0  # a car (train id 13) and an unlabeled row (-> 255)
    _png(gt, ids, "L")
    paths = wl.write_simulated_labels(tmp_path, ["aachen_000000_000019"], "clicks", 19, 0, clicks=5,
                                      out_root=tmp_path / "sim", dataset="cityscapes", mask_paths=[gt])
    assert paths == [tmp_path / "sim/5clicks/aachen_000000_000019_gtFine_labelTrainIds.png"]
    label, found = wl.read_sparse_label(paths[0], 19)
    assert found == 19 and (label < 19).sum() == 5 and set(label[label < 19].tolist()) == {0, 13}
    assert (label[5] == 19).all()  # never a click on an ignored pixel
    assert not (tmp_path / "5clicks").exists()  # written under out_root only


# ------------------------------------------------------------------------------------------- statistics
def test_label_statistics_on_a_hand_made_case():
    m = _mask()  # objects: one of class 1, two of class 2; 476 non-ignore pixels
    sparse = np.full(m.shape, C, np.uint8)
    sparse[5, 5] = 1  # square: 1 labeled pixel
    sparse[5, 15] = sparse[6, 15] = 2  # first class-2 object: 2
    sparse[0, 0] = 0  # background
    sparse[0, 1] = 2  # wrong class on background
    stats = wls.label_statistics([(m, sparse), (m, np.full(m.shape, C, np.uint8))], C)
    assert stats["images"] == 2 and stats["objects"] == 6
    assert stats["labeled_pixels_per_image"] == 2.5
    assert stats["labeled_share"] == pytest.approx(5 / (2 * 476))
    assert stats["labeled_pixels_per_object"] == pytest.approx(3 / 6)
    assert stats["objects_touched_share"] == pytest.approx(2 / 6)
    assert stats["background_labeled_per_image"] == 0.5
    assert stats["labeled_per_class"] == [1, 1, 3, 0]
    assert stats["labeled_off_class"] == 1


def test_simulations_on_the_digit_scenes_and_the_stats_command(digits_root, tmp_path, capsys):
    root, ids = _small_copy(digits_root, tmp_path, n=12)
    masks = [voc.read_mask(root / "SegmentationClass" / f"{sid}.png") for sid in ids]
    for kind in ("points", "scribbles"):
        stats = wls.label_statistics(
            [(m, wl.simulate_sparse_label(kind, m, 11, wl.sample_seed(0, sid))) for m, sid in zip(masks, ids)], 11)
        assert stats["labeled_off_class"] == 0 and stats["objects_touched_share"] == 1.0
        if kind == "points":
            assert stats["labeled_pixels_per_object"] == 1.0
    assert wls.main(["stats", "--root", str(root), "--kind", "points"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["images"] == 12 and printed["labeled_pixels_per_object"] == 1.0
    assert wls.main(["write", "--root", str(root), "--kind", "points"]) == 0
    capsys.readouterr()
    assert wls.main(["stats", "--root", str(root), "--kind", "points", "--from-files"]) == 0
    assert {k: v for k, v in json.loads(capsys.readouterr().out).items() if k != "from_files"} == \
        {k: v for k, v in printed.items() if k != "from_files"}
