"""Split list files: read the common formats, validate them, or draw a split from a seed.

A list file holds one sample per line: a VOC id (``2007_000032``), a Cityscapes stem, or one or two
paths relative to the data root (image [mask]), as in the widely shared public split lists. Every
problem is reported with ``file:line`` so a user can fix the list instead of guessing.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from reprokit.data.errors import SplitError


@dataclass(frozen=True)
class Sample:
    """One image of a data set: a stable id, its image path and its mask path (None if unlabeled).

    ``origin`` is the ``list:line`` that brought the sample in, so an error about its files can say which
    line of which list to fix."""

    id: str
    image: Path
    mask: Optional[Path]
    origin: str = field(default="", compare=False)


Resolver = Callable[[str], Sample]


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def scan_list(path: str | Path, root: str | Path, resolve: Resolver, need_masks: bool = True
              ) -> tuple[list[Sample], list[SplitError]]:
    """The samples of a split list, and one error per bad line (naming ``path:line``; the line is skipped):
    malformed lines, duplicate ids, entries that escape ``root`` (absolute paths or ``..``), and images or
    masks that do not exist. A missing or empty list is an error at once."""
    path, root = Path(path), Path(root)
    if not path.is_file():
        raise SplitError(f"split list not found: {path}")
    samples, problems, seen, lines = [], [], {}, 0
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        lines += 1
        try:
            sample = _resolve_line(line, f"{path}:{lineno}", root, resolve, need_masks)
            if sample.id in seen:
                raise SplitError(f"{path}:{lineno}: duplicate id {sample.id!r} (first on line {seen[sample.id]})")
        except SplitError as exc:
            problems.append(exc)
            continue
        seen[sample.id] = lineno
        samples.append(sample)
    if not lines:
        raise SplitError(f"{path}: the split list is empty")
    return samples, problems


def _resolve_line(line: str, where: str, root: Path, resolve: Resolver, need_masks: bool) -> Sample:
    tokens = line.split()
    if len(tokens) > 2:
        raise SplitError(f"{where}: expected an id or 'image [mask]' paths, got {len(tokens)} fields: {line!r}")
    if any(t.startswith("/") or ".." in Path(t).parts for t in tokens):
        raise SplitError(f"{where}: entry {line!r} escapes the data root {root} (absolute path or '..')")
    try:
        sample = replace(resolve(line), origin=where)
    except (KeyError, ValueError) as exc:
        raise SplitError(f"{where}: cannot interpret {line!r}: {exc}") from None
    for p in (sample.image, sample.mask):
        if p is not None and not _inside(root, p):
            raise SplitError(f"{where}: entry {line!r} escapes the data root {root}")
    if not sample.image.is_file():
        raise SplitError(f"{where}: image file missing for {sample.id!r}: {sample.image}")
    if need_masks and (sample.mask is None or not sample.mask.is_file()):
        raise SplitError(f"{where}: mask file missing for {sample.id!r}: {sample.mask}")
    return sample


def read_list(path: str | Path, root: str | Path, resolve: Resolver, need_masks: bool = True) -> list[Sample]:
    """Read a split list, stopping at its first bad line (see :func:`scan_list`)."""
    samples, problems = scan_list(path, root, resolve, need_masks)
    if problems:
        raise problems[0]
    return samples


ListReader = Callable[..., list[Sample]]  # read_list's signature: (path, root, resolve, need_masks=True)


def check_disjoint(labeled: list[Sample], unlabeled: list[Sample], labeled_file: str, unlabeled_file: str) -> None:
    """Labeled and unlabeled lists must not share ids (that would leak labels into the unlabeled set)."""
    shared = sorted({s.id for s in labeled} & {s.id for s in unlabeled})
    if shared:
        raise SplitError(
            f"{len(shared)} id(s) are both labeled ({labeled_file}) and unlabeled ({unlabeled_file}), "
            f"e.g. {shared[0]!r}"
        )


def draw_split(pool: list[Sample], seed: int, count: int | None = None, fraction: float | None = None
               ) -> tuple[list[Sample], list[Sample]]:
    """Deterministically draw ``count`` (or ``round(fraction * len)``) labeled samples; the rest are unlabeled."""
    if (count is None) == (fraction is None):
        raise SplitError("draw_split needs exactly one of count and fraction")
    n = count if count is not None else max(1, int(round(fraction * len(pool))))
    if not 0 < n <= len(pool):
        raise SplitError(f"labeled count {n} is not within 1..{len(pool)} (size of the pool)")
    order = np.random.default_rng(seed).permutation(len(pool))
    chosen = set(order[:n].tolist())
    labeled = [s for i, s in enumerate(pool) if i in chosen]
    unlabeled = [s for i, s in enumerate(pool) if i not in chosen]
    return labeled, unlabeled


def write_list(path: str | Path, samples: list[Sample]) -> Path:
    """Write ids one per line (the format :func:`read_list` reads back with the same resolver)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{s.id}\n" for s in samples))
    return path
