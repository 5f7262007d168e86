"""Checking a configured data set: the cheap checks every training runs before its first step, and the
full check ``reprokit data check`` runs over every file (what a user runs after downloading a data set).

Both read files through :mod:`reprokit.data.samples`, exactly as training does, so a file passes the
check if and only if training would read it.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

from tqdm.auto import tqdm

from reprokit.config import SPARSE_KINDS, DataConfig
from reprokit.data.datasets import Splits, resolve_splits
from reprokit.data.errors import DataError, SplitError, WeakLabelError
from reprokit.data.images import header_size
from reprokit.data.samples import check_headers, has_mask, load_sample
from reprokit.data.splits import Sample, scan_list
from reprokit.data.weak_source import WeakLabels, ensure_weak_labels

SPLITS = ("labeled", "unlabeled", "val")


def sample_problems(samples: Iterable[Sample], read: Callable[[Sample], object], progress: bool, desc: str
                    ) -> Iterator[DataError]:
    """Read each sample with ``read``; yield the error of each one that fails (one per sample)."""
    samples = list(samples)
    for sample in tqdm(samples, desc=desc, unit="sample", disable=not progress):
        try:
            read(sample)
        except DataError as exc:
            yield exc


def check_before_training(splits: Splits, cfg: DataConfig, progress: bool = False) -> None:
    """Stop before training at the first bad file, naming it. The lists were validated when the splits were
    read; here every training image and mask must open as an image of one size (headers only: seconds for
    VOC), and the val split is decoded whole once, label values included, so bad val data stops the run
    now rather than at the final evaluation. Label values of training masks are checked as they are read."""
    problems = itertools.chain(
        sample_problems(splits.labeled + splits.unlabeled, check_headers, progress, "checking training files"),
        sample_problems(splits.labeled, partial(_weak_header, weak=WeakLabels(cfg)), progress,
                        "checking weak labels") if cfg.label_kind in SPARSE_KINDS else (),
        sample_problems(splits.val, partial(load_sample, cfg=cfg), progress, "decoding val"))
    for problem in problems:
        raise problem


def _weak_header(sample: Sample, weak: WeakLabels) -> None:
    header_size(weak.path(sample), WeakLabelError, f"{weak.kind} label of {sample.id}")


def _read_weak(sample: Sample, cfg: DataConfig, weak: WeakLabels) -> None:
    weak.read(sample, load_sample(sample, cfg)[1])


@dataclass
class DataReport:
    """What ``reprokit data check`` found: samples per split, files read, and every problem."""

    counts: dict[str, int]
    files: int
    problems: list[DataError]

    @property
    def ok(self) -> bool:
        return not self.problems

    def by_kind(self) -> dict[str, list[DataError]]:
        kinds: dict[str, list[DataError]] = {}
        for problem in self.problems:
            kinds.setdefault(problem.kind, []).append(problem)
        return kinds

    def format(self, first: int = 10) -> str:
        """The report as text: counts, then up to ``first`` problems of each kind."""
        counts = ", ".join(f"{n} {name}" for name, n in self.counts.items())
        lines = [f"checked {counts} samples ({self.files} files)"]
        if self.ok:
            return "\n".join(lines + ["no problems found"])
        lines.append(f"{len(self.problems)} problem(s):")
        for kind, problems in self.by_kind().items():
            lines.append(f"  {kind} ({len(problems)}):")
            lines += [f"    {p}" for p in problems[:first]]
            if len(problems) > first:
                lines.append(f"    ... and {len(problems) - first} more")
        return "\n".join(lines)


def check_data(cfg: DataConfig, progress: bool = False) -> DataReport:
    """Every check over every file of the configured splits: list lines, whole decodes of images and masks,
    label values, and image / mask sizes. Collects all problems instead of stopping at the first."""
    list_problems: list[SplitError] = []

    def read_collecting(path, root, resolve, need_masks=True) -> list[Sample]:
        samples, problems = scan_list(path, root, resolve, need_masks)
        list_problems.extend(problems)
        return samples

    splits = resolve_splits(cfg, read_collecting)
    samples = [s for name in SPLITS for s in getattr(splits, name)]
    problems = list(sample_problems(samples, partial(load_sample, cfg=cfg), progress, "checking files"))
    weak_files = 0
    if cfg.label_kind != "dense":  # the weak labels training reads (simulated ones are written first, as there)
        ensure_weak_labels(cfg, splits.labeled)
        problems += sample_problems(splits.labeled, partial(_read_weak, cfg=cfg, weak=WeakLabels(cfg)), progress,
                                    "checking weak labels")
        weak_files = len(splits.labeled) if cfg.label_kind in SPARSE_KINDS else 0
    return DataReport({name: len(getattr(splits, name)) for name in SPLITS},
                      sum(1 + has_mask(s) for s in samples) + weak_files, list_problems + problems)
