"""The label value every reader, loss, metric and figure ignores (VOC's object outlines, padding added by
crops, Cityscapes ids outside the 19 train ids); class ids are 0..C-1. Defined here once, below every layer."""

IGNORE_INDEX = 255
