"""Weak labels: image-level class sets and sparse label maps (points, scribbles, clicks), simulated from dense
masks or read from the public releases.

Sparse encoding, used everywhere in reprokit (and by the AGMM-SASS code): a uint8 HxW map holding a class id
at labeled pixels, ``C`` (= num_classes) at unlabeled pixels, and 255 only for padding added by augmentation.
Dense masks follow the rest of the package: class ids 0..C-1 and 255 = ignore.

Simulation is deterministic from a seed, and an image's seed derives from (seed, sample id) through
:func:`sample_seed`, so a label never depends on list order; simulating in memory and reading back what
:func:`write_simulated_labels` wrote give the same array. Objects are connected components of one class with
4-connectivity (scipy's default: two parts touching only at a corner are two objects, so each gets a label
whichever connectivity a user counts with). Only NumPy and scipy.ndimage /
scipy.sparse are used, so the labels never depend on whether an optional package (scikit-image) is installed.

The public weak-label files could not be inspected when this was written: :func:`read_sparse_label` accepts
either ``C`` or 255 as "unlabeled" and says which it found. See docs/weak-labels.md.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from reprokit.config import SPARSE_KINDS
from reprokit.data import dataset as registered_dataset
from reprokit.data.errors import DataError, DataRootError, LabelError, MaskError, SplitError
from reprokit.data.images import open_whole
from reprokit.data.palette import voc_palette
from reprokit.labels import IGNORE_INDEX, check_label_values, classes_present
from reprokit.records import write_atomic, write_json_atomic

#: Background points per image. One point per object is the foreground protocol; without background points a
#: sparse-label method never sees a labeled background pixel (no background prototype for AGMM-SASS, no CE on
#: the most frequent class). Three, spread apart and away from objects, cover a background that objects may
#: split into parts, while staying "a few clicks" as in point annotation.
BACKGROUND_POINTS = 3
#: A point is drawn among the pixels whose distance to the object's border is at least this share of the
#: object's largest such distance: its central region, never its outline when the object has an inside.
CENTRAL_SHARE = 0.75
#: A scribble's two ends lie at least this share of the object's largest border distance inside it (and at
#: least 2 pixels when the object allows): strokes run along the object without touching its tips.
STROKE_END_SHARE = 0.25
#: Version of the simulation protocol, recorded with written labels: a change of the rules above bumps it,
#: so labels written by older code are re-simulated rather than mixed with new ones.
PROTOCOL = 2
#: Written next to simulated label files: the parameters they were made with and the file names written.
MANIFEST = ".reprokit-weak-labels.json"
_NUMPY_MAGIC = (b"\x93NUMPY", b"PK\x03\x04", b"\x80")  # .npy, .npz (zip), pickle protocol >= 2


# ---------------------------------------------------------------------------------------------- checks
def check_num_classes(num_classes: int) -> int:
    if not 1 <= int(num_classes) <= 254:
        raise ValueError(f"num_classes must be 1..254 (the unlabeled value C must fit in uint8 and differ from "
                         f"255), got {num_classes}")
    return int(num_classes)


def dense_mask(mask, num_classes: int, what: str = "mask") -> np.ndarray:
    """A dense mask as an HxW int array, its values checked (class ids 0..C-1 or 255)."""
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"{what}: expected an HxW array of class ids, got shape {m.shape}")
    m = m.astype(np.int64)
    check_label_values(m, num_classes, what, LabelError)
    return m


def sample_seed(seed: int, sample_id: str) -> int:
    """The simulation seed of one image: a hash of (seed, id), so an image's label does not depend on which
    other images are listed or in what order."""
    digest = hashlib.sha256(f"reprokit-weak/{int(seed)}/{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


# ---------------------------------------------------------------------------------------- image labels
def image_labels(mask, num_classes: int) -> torch.Tensor:
    """The classes present in a dense mask (255 excluded), as a BoolTensor[C]."""
    num_classes = check_num_classes(num_classes)
    return classes_present(dense_mask(mask, num_classes), num_classes)


# ------------------------------------------------------------------------------------- geometry helpers
def components(binary: np.ndarray):
    """(bounding-box slice, component mask inside it) of each 4-connected component, in raster order."""
    labels, _ = ndi.label(binary)
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        yield box, labels[box] == i


def _inner_distance(region: np.ndarray) -> np.ndarray:
    """Euclidean distance from each pixel of ``region`` to the nearest pixel outside it, the image edge
    counting as outside (1 on the outline, 2 or more strictly inside)."""
    return ndi.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]


def _pick(rng: np.random.Generator, score: np.ndarray, share: float) -> int:
    """Flat index of a pixel drawn with ``rng`` among those scoring at least ``share`` of the best score."""
    candidates = np.flatnonzero(score >= share * score.max())
    return int(candidates[rng.integers(len(candidates))])


def _spread(region: np.ndarray, distance: np.ndarray, count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Up to ``count`` pixels of ``region``, each far from what is outside it and from the pixels already
    chosen (farthest-point style: a central draw under min(distance, distance to earlier picks))."""
    chosen = np.zeros(region.shape, bool)
    picks = []
    for _ in range(count):
        score = distance if not picks else np.minimum(distance, ndi.distance_transform_edt(~chosen))
        score = np.where(region & ~chosen, score, 0.0)
        if score.max() <= 0:
            break
        y, x = np.unravel_index(_pick(rng, score, CENTRAL_SHARE), region.shape)
        chosen[y, x] = True
        picks.append((int(y), int(x)))
    return picks


_STEPS = ((0, 1, 1.0), (1, 0, 1.0), (1, 1, np.sqrt(2.0)), (1, -1, np.sqrt(2.0)))


def _pixel_graph(region: np.ndarray, distance: np.ndarray):
    """8-neighbour graph of the pixels of ``region`` (numbered in raster order): one matrix weighted by step
    length, one by step length / (d_u d_v), which makes paths near the border costly."""
    index = np.full(region.shape, -1, np.int64)
    index[region] = np.arange(int(region.sum()))
    h, w = region.shape
    us, vs, lengths, costs = [], [], [], []
    for dy, dx, length in _STEPS:
        a = (slice(0, h - dy), slice(max(0, -dx), w - max(0, dx)))
        b = (slice(dy, h), slice(max(0, dx), w - max(0, -dx)))
        both = region[a] & region[b]
        us.append(index[a][both])
        vs.append(index[b][both])
        lengths.append(np.full(int(both.sum()), length))
        costs.append(length / (distance[a][both] * distance[b][both]))
    n = int(region.sum())
    u, v = np.concatenate(us), np.concatenate(vs)
    by_length = coo_matrix((np.concatenate(lengths), (u, v)), shape=(n, n)).tocsr()
    by_cost = coo_matrix((np.concatenate(costs), (u, v)), shape=(n, n)).tocsr()
    return by_length, by_cost


def _stroke(region: np.ndarray, distance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A one-pixel-wide 8-connected stroke inside the connected ``region``, along its middle.

    From a central start drawn with ``rng``, the end A is the pixel farthest along the region (geodesic
    length) among those at least ``STROKE_END_SHARE`` of the region's depth inside; the end B is the one
    farthest from A. The stroke is the path A->B that minimises sum(step / (d_u d_v)), which follows the
    medial axis (the main branch of the skeleton) and stays away from the border where the region allows."""
    n = int(region.sum())
    if n <= 2:
        return region.copy()
    d = distance[region]
    by_length, by_cost = _pixel_graph(region, distance)
    start = _pick(rng, d, CENTRAL_SHARE)
    deep = np.flatnonzero(d >= min(d.max(), max(2.0, STROKE_END_SHARE * d.max())))
    from_start = dijkstra(by_length, directed=False, indices=start)
    end_a = int(deep[np.argmax(from_start[deep])])
    from_a = dijkstra(by_length, directed=False, indices=end_a)
    end_b = int(deep[np.argmax(from_a[deep])])
    _, previous = dijkstra(by_cost, directed=False, indices=end_a, return_predecessors=True)
    path = [end_b]
    while path[-1] != end_a:
        path.append(int(previous[path[-1]]))
    flat = np.zeros(n, bool)
    flat[path] = True
    out = np.zeros(region.shape, bool)
    out[region] = flat
    return out


# ------------------------------------------------------------------------------------------ simulation
def simulate_points(mask, num_classes: int, seed: int, background_points: int = BACKGROUND_POINTS, *,
                    background: int | None = 0) -> np.ndarray:
    """Point labels simulated from a dense mask: uint8 HxW, ``C`` everywhere except the points.

    Every connected component (4-connectivity) of every foreground class gets one point, drawn with the seed
    among its central pixels (distance to the object's border at least ``CENTRAL_SHARE`` of the largest:
    inside the object, never on its outline when it has an inside). Then ``background_points`` points of class
    ``background`` are placed in the background, spread apart and away from objects, ignore bands and the
    image edge (fewer when the background has fewer pixels).

    The default of 3 background points (``BACKGROUND_POINTS``): without any, a method trained on points never
    sees a labeled background pixel, although background is the largest class of VOC-style data; three spread
    points cover a background split into parts by objects while staying a few clicks per image, like the
    object points. ``background=None`` treats every class as an object (no background points), for data sets
    without a background class. Same seed, same points.
    """
    num_classes = check_num_classes(num_classes)
    m = dense_mask(mask, num_classes)
    rng = np.random.default_rng(seed)
    out = np.full(m.shape, num_classes, np.uint8)
    for k in np.unique(m[m != IGNORE_INDEX]).tolist():
        if k == background:
            continue
        for box, region in components(m == k):
            y, x = np.unravel_index(_pick(rng, _inner_distance(region), CENTRAL_SHARE), region.shape)
            out[box][y, x] = k
    if background is not None and background_points > 0:
        bg = m == background
        if bg.any():
            for y, x in _spread(bg, _inner_distance(bg), int(background_points), rng):
                out[y, x] = background
    return out


def simulate_scribbles(mask, num_classes: int, seed: int) -> np.ndarray:
    """Scribble labels simulated from a dense mask: uint8 HxW, ``C`` except along the strokes.

    Every connected component (4-connectivity) of every class present, background included, gets one stroke
    drawn inside it along its middle (see :func:`_stroke`): a background stroke runs through the open
    background, away from objects, ignore bands and the image edge, as an annotator would draw it. Every
    labeled pixel therefore carries the mask's class at that pixel. The seed draws each stroke's central
    start; same seed, same strokes.
    """
    num_classes = check_num_classes(num_classes)
    m = dense_mask(mask, num_classes)
    rng = np.random.default_rng(seed)
    out = np.full(m.shape, num_classes, np.uint8)
    for k in np.unique(m[m != IGNORE_INDEX]).tolist():
        for box, region in components(m == k):
            out[box][_stroke(region, _inner_distance(region), rng)] = k
    return out


def simulate_clicks(mask, num_classes: int, seed: int, count: int) -> np.ndarray:
    """``count`` click labels simulated from a dense mask (Cityscapes "N clicks"): uint8 HxW, ``C`` except
    at the clicked pixels, each of which carries its pixel's class.

    Spread over classes: every class present first gets one click, at a pixel away from the class's border
    where it has one (when ``count`` is below the number of classes, the classes with the most pixels get
    them, ties to the lower id); the remaining clicks go to pixels drawn uniformly, without replacement, from
    all non-ignore pixels, so classes receive clicks in proportion to their area on average while no class
    present is left without one. Fewer clicks are placed only when the image has fewer non-ignore pixels
    than ``count``. All classes are treated alike (Cityscapes has no background class). Same seed, same clicks.
    """
    num_classes = check_num_classes(num_classes)
    if int(count) < 0:
        raise ValueError(f"clicks per image must be >= 0, got {count}")
    m = dense_mask(mask, num_classes)
    rng = np.random.default_rng(seed)
    out = np.full(m.shape, num_classes, np.uint8)
    classes, areas = np.unique(m[m != IGNORE_INDEX], return_counts=True)
    order = sorted(zip(classes.tolist(), areas.tolist()), key=lambda ka: (-ka[1], ka[0]))
    taken = np.zeros(m.shape, bool)
    for k, _ in order[:int(count)]:
        depth = _inner_distance(m == k)
        inside = np.flatnonzero(depth >= min(2.0, depth.max()))
        taken.flat[inside[rng.integers(len(inside))]] = True
    free = np.flatnonzero((m != IGNORE_INDEX) & ~taken)
    rest = min(int(count) - int(taken.sum()), len(free))
    if rest > 0:
        taken.flat[rng.choice(free, size=rest, replace=False)] = True
    out[taken] = m[taken]
    return out


def simulate_sparse_label(kind: str, mask, num_classes: int, seed: int, clicks: int = 100) -> np.ndarray:
    """The simulated sparse label of ``kind`` (points, scribbles or clicks) for one dense mask: what
    :func:`write_simulated_labels` writes for an image when given ``sample_seed(seed, id)`` as ``seed``."""
    if kind == "points":
        return simulate_points(mask, num_classes, seed)
    if kind == "scribbles":
        return simulate_scribbles(mask, num_classes, seed)
    if kind == "clicks":
        return simulate_clicks(mask, num_classes, seed, clicks)
    raise ValueError(f"label kind {kind!r} is not a sparse label; expected one of {', '.join(SPARSE_KINDS)}")


# ------------------------------------------------------------------------------------------ file paths
def weak_label_path(root, dataset: str, kind: str, sample_id: str, mask_path=None, clicks: int = 100) -> Path:
    """Where the sparse label of one image lives: in the layout of the data set's public releases, as its
    registry entry declares (:func:`reprokit.data.voc.sparse_label_path` for VOC and the digit scenes,
    :func:`reprokit.data.cityscapes.sparse_label_path`, clicks only, for Cityscapes)."""
    root = Path(root)
    if kind not in SPARSE_KINDS:
        raise ValueError(f"label kind {kind!r} has no sparse label file; expected one of {', '.join(SPARSE_KINDS)}")
    if kind == "clicks" and (isinstance(clicks, bool) or not isinstance(clicks, (int, np.integer)) or clicks < 1):
        raise ValueError(f"clicks per image must be a positive integer (public sets: 20, 50, 100), got {clicks!r}")
    return registered_dataset(dataset).weak_label_path(root, kind, str(sample_id), mask_path, clicks)


# ------------------------------------------------------------------------------------------------ readers
def read_sparse_label(path, num_classes: int) -> tuple[np.ndarray, int | None]:
    """A sparse label file as the reprokit encoding, and the value the file used for "unlabeled".

    Palette ('P') and grayscale ('L') PNGs are read as raw indices (never through their colours). Allowed
    values: class ids 0..C-1, ``C`` and 255. When ``C`` is present it is the unlabeled value (as in the
    AGMM-SASS code) and any 255 stays 255 (ignored, like padding); when only 255 is present, 255 is the
    unlabeled value and becomes ``C``. Returns (uint8 HxW array with ``C`` at unlabeled pixels, the unlabeled
    value found: ``C``, 255, or None when every pixel is labeled). Any other value is a LabelError naming
    the file."""
    num_classes = check_num_classes(num_classes)
    path = Path(path)
    if not path.is_file():
        raise MaskError(f"{path}: sparse label file not found; expected a PNG of class ids with {num_classes} "
                        f"(or 255) at unlabeled pixels")
    img = open_whole(path, MaskError, "sparse label")
    if img.mode not in ("P", "L"):
        raise MaskError(f"{path}: sparse label stored as {img.mode!r}; expected a palette ('P') or grayscale ('L') "
                        f"PNG of class indices")
    label = np.array(img, dtype=np.uint8)
    check_label_values(label, num_classes, str(path), LabelError, unlabeled=True)
    if (label == num_classes).any():
        return label, num_classes
    if (label == IGNORE_INDEX).any():
        label[label == IGNORE_INDEX] = num_classes
        return label, IGNORE_INDEX
    return label, None


def read_image_label_list(path, num_classes: int) -> dict[str, torch.Tensor]:
    """Image-level labels from a text file, one image per line: ``<id> <class id> <class id> ...``.

    Blank lines and lines starting with '#' are skipped. Returns {id: BoolTensor[C]}. A line without class
    ids, a token that is not an integer, a class id outside 0..C-1 or a repeated id is an error naming the file
    and line. NumPy / pickle files (the ``cls_labels.npy`` dicts of some releases) are refused: loading a
    pickled dict can run code; convert them to this text format (docs/weak-labels.md shows how)."""
    num_classes = check_num_classes(num_classes)
    path = Path(path)
    if not path.is_file():
        raise SplitError(f"{path}: image-level label list not found; expected a text file with lines "
                         f"'<id> <class id> ...'")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if path.suffix.lower() in (".npy", ".npz", ".pkl", ".pickle") or head.startswith(_NUMPY_MAGIC):
        raise DataError(f"{path}: a NumPy or pickle file; refused for safety, as loading a pickled dict could run "
                        f"code. Convert it to the text format: one line per image, '<id> <class id> <class id> ...'")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SplitError(f"{path}: not UTF-8 text; expected lines '<id> <class id> ...'") from None
    labels: dict[str, torch.Tensor] = {}
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        sid, rest = tokens[0], tokens[1:]
        where = f"{path}:{lineno}"
        if not rest:
            raise SplitError(f"{where}: expected '<id> <class id> ...', found the id {sid!r} without class ids "
                             f"(is this a split list rather than an image-level label list?)")
        if sid in first_line:
            raise SplitError(f"{where}: duplicate id {sid!r} (first on line {first_line[sid]})")
        vector = torch.zeros(num_classes, dtype=torch.bool)
        for token in rest:
            try:
                k = int(token)
            except ValueError:
                raise SplitError(f"{where}: {token!r} is not a class id; expected integers "
                                 f"0..{num_classes - 1} after the id") from None
            if not 0 <= k < num_classes:
                raise LabelError(f"{where}: class id {k} is outside 0..{num_classes - 1} "
                                 f"(num_classes = {num_classes})")
            vector[k] = True
        labels[sid] = vector
        first_line[sid] = lineno
    if not labels:
        raise SplitError(f"{path}: holds no image labels; expected lines '<id> <class id> ...'")
    return labels


def write_image_label_list(path, labels: Mapping[str, object]) -> Path:
    """Write {id: BoolTensor[C] or class ids} as the text format :func:`read_image_label_list` reads
    (atomically; ids in the given order)."""
    lines = []
    for sid, value in labels.items():
        if not sid or any(c.isspace() for c in sid) or sid.startswith("#"):
            raise ValueError(f"image id {sid!r} cannot be written to a list file (empty, whitespace or '#')")
        v = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        ids = np.flatnonzero(v).tolist() if v.dtype == bool else sorted(set(int(k) for k in v.tolist()))
        if not ids:
            raise ValueError(f"image {sid!r} has no class; a line needs at least one class id")
        lines.append(" ".join([sid, *map(str, ids)]))
    text = "\n".join(lines) + "\n"
    return write_atomic(path, lambda fh: fh.write(text.encode()))


# ------------------------------------------------------------------------------------------------ writers
def _save_png(label: np.ndarray):
    def write(fh) -> None:
        img = Image.fromarray(label.astype(np.uint8), mode="P")
        img.putpalette(voc_palette(256).reshape(-1).tolist())
        img.save(fh, format="PNG")
    return write


def _claim_label_dir(folder: Path, params: dict, names: Sequence[str]) -> set[str]:
    """Make ``folder`` reprokit's own simulated-label folder for ``params``; returns the file names written
    earlier with the same parameters, which may be kept.

    A folder holding files without reprokit's manifest (public labels, a user's files) is refused, so a wrong
    root never loses data. Labels written with other parameters are removed first (only the files the
    manifest lists), so a folder never mixes two simulations."""
    manifest = folder / MANIFEST
    kept: set[str] = set()
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text())
            old_params, old_files = old["params"], [str(n) for n in old["files"]]
        except (OSError, ValueError, KeyError, TypeError):
            raise DataRootError(f"{manifest}: unreadable manifest of simulated labels; expected JSON with 'params' "
                                f"and 'files'. Remove {folder} to simulate again") from None
        if old_params == params:
            kept = set(old_files)
        else:
            for name in old_files:
                if Path(name).name == name and not name.startswith("."):  # never outside this folder
                    (folder / name).unlink(missing_ok=True)
    elif folder.is_dir():
        found = sorted(p.name for p in folder.iterdir() if not p.name.startswith(f".{MANIFEST}.tmp"))
        if found:
            shown = ", ".join(found[:6]) + (f" and {len(found) - 6} more" if len(found) > 6 else "")
            raise DataRootError(f"{folder}: refusing to write simulated labels into a folder that holds files "
                                f"reprokit did not write (found {shown}); they may be a public release. Expected "
                                f"an empty or missing folder, or one written by write_simulated_labels")
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(manifest, {"params": params, "files": sorted(kept | set(names))})  # before any label file
    return kept


def write_simulated_labels(root, ids: Sequence[str], kind: str, num_classes: int, seed: int, clicks: int = 100, *,
                           out_root=None, dataset: str = "voc", mask_paths: Sequence | None = None) -> list[Path]:
    """Simulate sparse labels of ``kind`` for ``ids`` from their dense masks and write them where the public
    reader looks (:func:`weak_label_path` under ``out_root``, default ``root``), as palette PNGs in the reprokit
    encoding (``C`` unlabeled), so :func:`read_sparse_label` reads them unchanged. Returns the paths, in the
    order of ``ids``.

    Masks: ``<root>/SegmentationClass/<id>.png`` (VOC layout, such as the digit scenes), or ``mask_paths``
    (one per id; Cityscapes ``labelIds`` masks are mapped to train ids when ``dataset`` is cityscapes, which
    supports clicks only). Each image's seed is ``sample_seed(seed, id)``, so a label does not depend on list
    order. Every file is written atomically. The folder's manifest (``MANIFEST``, written before any label)
    records the parameters (kind, num_classes, seed, clicks, protocol version) and the files: a file already
    written with the same parameters is kept (rerunning is cheap and idempotent); a change of parameters
    removes the earlier simulation first. A folder holding files reprokit did not write is refused. One
    writer per folder at a time."""
    num_classes = check_num_classes(num_classes)
    if kind not in SPARSE_KINDS:
        raise ValueError(f"label kind {kind!r} cannot be simulated as a sparse label; expected one of "
                         f"{', '.join(SPARSE_KINDS)}")
    from reprokit.data.samples import read_label  # here: samples may import this module to read weak labels

    root = Path(root)
    out_root = root if out_root is None else Path(out_root)
    ids = [str(s) for s in ids]
    for sid in ids:
        if not sid or Path(sid).name != sid or sid.startswith("."):
            raise ValueError(f"sample id {sid!r} is not a plain file stem; expected ids such as 2007_000032")
    if mask_paths is None:
        mask_paths = [root / "SegmentationClass" / f"{sid}.png" for sid in ids]
    mask_paths = [Path(p) for p in mask_paths]
    if len(mask_paths) != len(ids):
        raise ValueError(f"{len(mask_paths)} mask paths for {len(ids)} ids; expected one mask per id")
    if not ids:
        return []
    paths = [weak_label_path(out_root, dataset, kind, sid, mask, clicks) for sid, mask in zip(ids, mask_paths)]
    params = {"kind": kind, "num_classes": num_classes, "seed": int(seed),
              "clicks": int(clicks) if kind == "clicks" else None, "protocol": PROTOCOL}
    kept = _claim_label_dir(paths[0].parent, params, [p.name for p in paths])
    for sid, mask_path, path in zip(ids, mask_paths, paths):
        if path.name in kept and path.is_file():
            continue
        if not mask_path.is_file():
            raise MaskError(f"{mask_path}: mask not found for id {sid!r}; simulated {kind} labels are made from "
                            f"the image's dense mask")
        mask = read_label(mask_path, dataset, num_classes)
        label = simulate_sparse_label(kind, mask, num_classes, sample_seed(seed, sid), clicks)
        write_atomic(path, _save_png(label))
    return paths
