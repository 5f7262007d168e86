"""The display palette: every class of the digit scenes (and background and ignore) far apart in CIELAB, while
the stored masks' palette and the other data sets' display colours stay as they were."""
import numpy as np

from reprokit.data.palette import palette_for
from reprokit.viz.palette import cielab, closest_pair, colorize, display_palette, render_swatches


def test_cielab_of_known_colours():
    assert np.allclose(cielab([255, 255, 255]), [100, 0, 0], atol=0.05)
    assert np.allclose(cielab([0, 0, 0]), [0, 0, 0], atol=1e-6)
    assert np.allclose(cielab([255, 0, 0]), [53.24, 80.09, 67.20], atol=0.1)


def test_every_digit_class_is_distinguishable_in_the_display_palette():
    pal = display_palette("digits")
    shown = np.concatenate([pal[:11], pal[255:256]])  # background, digits 0-9, ignore
    assert len({tuple(c) for c in shown}) == 12
    assert closest_pair(shown)[0] > 35  # Delta E 1976; about 2.3 is a just noticeable difference
    stored = palette_for("digits")[:11]
    assert closest_pair(stored)[0] < closest_pair(shown)[0]  # what the display palette fixes


def test_other_data_sets_keep_their_palettes_and_colorize_uses_the_display_one():
    for dataset in ("voc", "cityscapes"):
        assert np.array_equal(display_palette(dataset), palette_for(dataset))
    label = np.array([[0, 1], [10, 255]], dtype=np.uint8)
    assert np.array_equal(colorize(label, "digits"), display_palette("digits")[label])


def test_swatches_render(tmp_path):
    out = render_swatches(tmp_path / "p.png", ["background", *(f"digit {d}" for d in range(10))])
    assert out.stat().st_size > 1000
