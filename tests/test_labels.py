"""The one place that says which classes a label map holds and which values it may hold."""
import numpy as np
import pytest
import torch

from reprokit.labels import IGNORE_INDEX, check_label_values, classes_present


def test_classes_present_of_a_map_and_of_a_batch():
    label = np.array([[0, 2, IGNORE_INDEX], [4, 2, 4]], np.uint8)  # C = 4: the sparse unlabeled value, no class
    assert classes_present(label, 4).tolist() == [True, False, True, False]
    assert classes_present(label[:, ::-1], 4).tolist() == [True, False, True, False]  # a flipped view reads too
    batch = torch.tensor([[[1, 1], [255, 3]], [[0, 0], [0, 0]]])
    assert classes_present(batch, 4).tolist() == [[False, True, False, True], [True, False, False, False]]


def test_label_values_outside_the_classes_are_named():
    check_label_values(np.array([[0, 3, 255]]), 4, "ok.png")
    with pytest.raises(ValueError, match=r"m.png: label value 4 at row 0, column 1 is neither a class id 0..3 "
                                         r"\(data.num_classes = 4\) nor 255 \(ignore\); values out of range here: "
                                         r"\[4, 9\]"):
        check_label_values(np.array([[0, 4], [9, 255]]), 4, "m.png")
    check_label_values(np.array([[0, 4, 255]]), 4, "sparse.png", unlabeled=True)  # C marks unlabeled pixels
    with pytest.raises(KeyError, match=r"s.png: label value 5 .* 0..3, 4 \(unlabeled"):
        check_label_values(np.array([[5]]), 4, "s.png", KeyError, unlabeled=True)
    with pytest.raises(ValueError, match="label value -1"):
        check_label_values(np.array([[-1]]), 4, "neg")
