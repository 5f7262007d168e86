import numpy as np
import pytest
from PIL import Image

from reprokit.data import cityscapes, voc
from reprokit.data.palette import voc_palette
from reprokit.data.splits import SplitError, check_disjoint, draw_split, read_list, write_list


def _voc_root(tmp_path, ids=("2007_000032", "2007_000033")):
    for d in ("JPEGImages", "SegmentationClass", "SegmentationClassAug"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    for i in ids:
        Image.new("RGB", (8, 6)).save(tmp_path / "JPEGImages" / f"{i}.jpg")
        m = Image.fromarray(np.full((6, 8), 15, np.uint8), mode="P")
        m.putpalette(voc_palette().reshape(-1).tolist())
        m.save(tmp_path / "SegmentationClass" / f"{i}.png")
        Image.fromarray(np.full((6, 8), 3, np.uint8), mode="L").save(tmp_path / "SegmentationClassAug" / f"{i}.png")
    return tmp_path


def test_read_mask_palette_grayscale_rgb(tmp_path):
    root = _voc_root(tmp_path)
    assert (voc.read_mask(root / "SegmentationClass/2007_000032.png") == 15).all()
    assert (voc.read_mask(root / "SegmentationClassAug/2007_000032.png") == 3).all()
    rgb = voc_palette()[np.array([[0, 1], [255, 20]])]
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(voc.read_mask(tmp_path / "rgb.png"), [[0, 1], [255, 20]])
    Image.fromarray(np.full((2, 2, 3), 7, np.uint8)).save(tmp_path / "bad.png")
    with pytest.raises(voc.MaskError, match=r"bad.png.*not in the VOC palette"):
        voc.read_mask(tmp_path / "bad.png")


def test_list_formats_and_layouts(tmp_path):
    root = _voc_root(tmp_path)
    (root / "ids.txt").write_text("2007_000032\n\n2007_000033\n")
    (root / "pairs.txt").write_text("JPEGImages/2007_000032.jpg SegmentationClassAug/2007_000032.png\n")
    assert [s.id for s in read_list(root / "ids.txt", root, voc.resolver(root, "classic"))] == ["2007_000032", "2007_000033"]
    aug = read_list(root / "ids.txt", root, voc.resolver(root, "aug"))
    assert aug[0].mask.parent.name == "SegmentationClassAug"
    assert read_list(root / "pairs.txt", root, voc.resolver(root))[0].id == "2007_000032"


@pytest.mark.parametrize("content,match", [
    ("", "is empty"),
    ("2007_000032\n2007_000032\n", r"ids.txt:2: duplicate id '2007_000032' \(first on line 1\)"),
    ("../etc/passwd\n", r"ids.txt:1: .*escapes the data root"),
    ("/abs/x.jpg /abs/y.png\n", r"ids.txt:1: .*escapes the data root"),
    ("2007_000099\n", r"ids.txt:1: image file missing for '2007_000099'"),
    ("a b c\n", r"ids.txt:1: expected an id"),
])
def test_bad_lists_name_the_line(tmp_path, content, match):
    root = _voc_root(tmp_path)
    (root / "ids.txt").write_text(content)
    with pytest.raises(SplitError, match=match):
        read_list(root / "ids.txt", root, voc.resolver(root))


def test_missing_mask_and_missing_file(tmp_path):
    root = _voc_root(tmp_path)
    (root / "SegmentationClass/2007_000033.png").unlink()
    (root / "ids.txt").write_text("2007_000033\n")
    with pytest.raises(SplitError, match=r"ids.txt:1: mask file missing"):
        read_list(root / "ids.txt", root, voc.resolver(root))
    assert read_list(root / "ids.txt", root, voc.resolver(root), need_masks=False)[0].mask is not None
    with pytest.raises(SplitError, match="not found"):
        read_list(root / "nope.txt", root, voc.resolver(root))


def test_overlap_and_drawn_split(tmp_path):
    root = _voc_root(tmp_path, ids=[f"id{i}" for i in range(10)])
    (root / "all.txt").write_text("".join(f"id{i}\n" for i in range(10)))
    pool = read_list(root / "all.txt", root, voc.resolver(root))
    lab, unl = draw_split(pool, seed=3, fraction=0.3)
    lab2, _ = draw_split(pool, seed=3, count=3)
    assert [s.id for s in lab] == [s.id for s in lab2] and len(lab) == 3 and len(unl) == 7
    assert {s.id for s in lab}.isdisjoint({s.id for s in unl})
    with pytest.raises(SplitError, match=r"both labeled \(l.txt\) and unlabeled \(u.txt\)"):
        check_disjoint(lab, pool, "l.txt", "u.txt")
    write_list(root / "l.txt", lab)
    assert [s.id for s in read_list(root / "l.txt", root, voc.resolver(root))] == [s.id for s in lab]


def test_cityscapes_train_ids_and_resolver(tmp_path):
    ids = np.array([[7, 8, 11, 0], [33, 34, -1, 255]], dtype=np.int32)
    np.testing.assert_array_equal(cityscapes.to_train_ids(ids), [[0, 1, 2, 255], [18, 255, 255, 255]])
    assert cityscapes.to_train_ids(np.arange(34)).tolist().count(255) == 34 - 19
    resolve = cityscapes.resolver(tmp_path, "train")
    pair = resolve("leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png "
                   "gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png")
    assert pair.id == "aachen_000000_000019" and not cityscapes.mask_needs_mapping(pair.mask)
    stem = resolve("aachen/aachen_000000_000019")
    assert stem.mask.name == "aachen_000000_000019_gtFine_labelIds.png" and cityscapes.mask_needs_mapping(stem.mask)
