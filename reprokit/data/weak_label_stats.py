"""What a set of weak labels gives to learn from, measured against the dense masks they came with, and the
command line that reports it (``python -m reprokit.data.weak_label_stats``). Nothing here runs in training:
it inspects label files (:mod:`reprokit.data.weak_labels` simulates, reads and writes them).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np

from reprokit.config import SPARSE_KINDS
from reprokit.data.errors import SplitError
from reprokit.data.samples import read_label
from reprokit.data.weak_labels import (check_num_classes, components, dense_mask, read_sparse_label, sample_seed,
                                       simulate_sparse_label, weak_label_path, write_simulated_labels)
from reprokit.labels import IGNORE_INDEX


def survey_unlabeled_values(paths: Iterable, num_classes: int) -> Counter:
    """How many files use ``C``, 255 or nothing as the unlabeled value ({C: n, 255: n, None: n}): a release
    mixing both deserves a look before training on it."""
    return Counter(read_sparse_label(p, num_classes)[1] for p in paths)



# --------------------------------------------------------------------------------------------- statistics
def label_statistics(masks_and_sparse: Iterable[tuple[np.ndarray, np.ndarray]], num_classes: int, *,
                     background: int | None = 0) -> dict:
    """What a set of sparse labels gives to learn from, measured against the dense masks they came with.

    ``masks_and_sparse``: (dense mask, sparse label in the reprokit encoding) pairs. Objects are the
    4-connected components of each class other than ``background`` and 255. Returns: ``images``, ``objects``,
    ``labeled_pixels_per_image`` (mean), ``labeled_share`` (labeled pixels / non-ignore pixels, over all
    images), ``labeled_pixels_per_object`` (mean labeled pixels on an object: points per object for points),
    ``objects_touched_share`` (objects with at least one labeled pixel), ``background_labeled_per_image``,
    ``labeled_per_class`` (labeled pixels of each class, summed) and ``labeled_off_class`` (labeled pixels
    whose class differs from the mask's, 255 included; 0 for every simulation here)."""
    num_classes = check_num_classes(num_classes)
    images = objects = touched = on_objects = labeled_total = valid_total = off_class = on_background = 0
    per_class = np.zeros(num_classes, np.int64)
    for mask, sparse in masks_and_sparse:
        m = dense_mask(mask, num_classes)
        s = np.asarray(sparse).astype(np.int64)
        if s.shape != m.shape:
            raise ValueError(f"image {images}: sparse label of shape {s.shape} does not match its mask {m.shape}")
        labeled = s < num_classes
        images += 1
        labeled_total += int(labeled.sum())
        valid_total += int((m != IGNORE_INDEX).sum())
        off_class += int((labeled & (s != m)).sum())
        per_class += np.bincount(s[labeled], minlength=num_classes)[:num_classes]
        if background is not None:
            on_background += int((labeled & (s == background)).sum())
        for k in np.unique(m[m != IGNORE_INDEX]).tolist():
            if k == background:
                continue
            for box, region in components(m == k):
                hits = int((labeled[box] & region).sum())
                objects += 1
                touched += hits > 0
                on_objects += hits
    return {
        "images": images,
        "objects": objects,
        "labeled_pixels_per_image": labeled_total / images if images else 0.0,
        "labeled_share": labeled_total / valid_total if valid_total else 0.0,
        "labeled_pixels_per_object": on_objects / objects if objects else 0.0,
        "objects_touched_share": touched / objects if objects else 0.0,
        "background_labeled_per_image": on_background / images if images else 0.0,
        "labeled_per_class": per_class.tolist(),
        "labeled_off_class": off_class,
    }


# ------------------------------------------------------------------------------------- command line
def _voc_ids(root: Path, split: str) -> list[str]:
    lst = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not lst.is_file():
        raise SplitError(f"{lst}: split list not found; expected a VOC-layout data set under {root}")
    return [line.split()[0] for line in lst.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    """``python -m reprokit.data.weak_label_stats {stats,write} --root R --split S --kind K``: label statistics
    (JSON on stdout) of simulated or written sparse labels of a VOC-layout data set, or write them."""
    parser = argparse.ArgumentParser(prog="python -m reprokit.data.weak_label_stats", description=main.__doc__)
    parser.add_argument("action", choices=("stats", "write"))
    parser.add_argument("--root", default="data/digits", help="VOC-layout data set (default: the digit scenes)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--kind", required=True, choices=SPARSE_KINDS)
    parser.add_argument("--num-classes", type=int, default=11, help="11 for the digit scenes, 21 for VOC")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clicks", type=int, default=100)
    parser.add_argument("--from-files", action="store_true",
                        help="stats of the label files under --root instead of simulating in memory")
    args = parser.parse_args(argv)
    root = Path(args.root)
    ids = _voc_ids(root, args.split)
    if args.action == "write":
        paths = write_simulated_labels(root, ids, args.kind, args.num_classes, args.seed, args.clicks)
        print(f"{len(paths)} {args.kind} labels under {paths[0].parent if paths else root}")
        return 0

    def pairs():
        for sid in ids:
            mask = read_label(root / "SegmentationClass" / f"{sid}.png", "voc", args.num_classes)
            if args.from_files:
                path = weak_label_path(root, "voc", args.kind, sid, clicks=args.clicks)
                yield mask, read_sparse_label(path, args.num_classes)[0]
            else:
                yield mask, simulate_sparse_label(args.kind, mask, args.num_classes, sample_seed(args.seed, sid),
                                                  args.clicks)

    stats = label_statistics(pairs(), args.num_classes)
    stats.update(root=str(root), split=args.split, kind=args.kind, seed=args.seed,
                 clicks=args.clicks if args.kind == "clicks" else None, from_files=args.from_files)
    json.dump(stats, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
