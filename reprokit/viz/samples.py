"""Figures that need a trained network: qualitative grids (Figs. 9/10, and their weak-label counterparts)
and t-SNE of features (Fig. 7). They read the run directory (config + checkpoint) and the images it names."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from reprokit.data.datasets import SegDataset, class_names, resolve_splits  # noqa: E402
from reprokit.engine.evaluate import predict_probs  # noqa: E402
from reprokit.engine.reeval import load_trained_method  # noqa: E402
from reprokit.labels import IGNORE_INDEX  # noqa: E402
from reprokit.viz.palette import colorize, display_palette  # noqa: E402


class TrainedRun:
    """A run's evaluated network in eval mode, with its validation set."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.cfg, method = load_trained_method(self.run_dir)
        self.net = method.eval_network().eval()
        self.val = SegDataset(resolve_splits(self.cfg.data).val, self.cfg.data, train=False)
        self.classes = class_names(self.cfg.data)

    @torch.no_grad()
    def predict(self, index: int, dataset: SegDataset | None = None) -> np.ndarray:
        """The prediction on image ``index`` of ``dataset`` (default: the validation set)."""
        item = (self.val if dataset is None else dataset)[index]
        probs = predict_probs(self.net, item["image"][None], self.cfg.eval,
                              self.cfg.eval_crop_size, self.cfg.data.num_classes)
        return probs.argmax(1)[0].numpy().astype(np.uint8)

    def training_images(self) -> SegDataset:
        """The run's labeled training images, unaugmented, with their masks (weak runs show these: their
        weak labels exist for training images only)."""
        return SegDataset(resolve_splits(self.cfg.data).labeled, self.cfg.data, train=False)

    def image(self, index: int) -> np.ndarray:
        return np.asarray(Image.open(self.val.samples[index].image).convert("RGB"))

    def ground_truth(self, index: int) -> np.ndarray:
        return self.val[index]["mask"].numpy().astype(np.uint8)


def panel_grid(rows: list[list[np.ndarray]], titles: list[str]):
    """A figure of image panels, one list per row, the column titles on the first row."""
    fig, axes = plt.subplots(len(rows), len(titles), figsize=(2 * len(titles), 2 * len(rows)), squeeze=False)
    for r, panels in enumerate(rows):
        for c, panel in enumerate(panels):
            axes[r, c].imshow(panel, interpolation="nearest")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(titles[c], fontsize=9)
    fig.tight_layout()
    return fig, axes


def qualitative_grid(runs: dict[str, TrainedRun], indices: list[int]):
    """Figs. 9/10: one row per validation image: the image, each run's prediction (one column per label of
    ``runs``, in order) and the ground truth, in the data set's display palette."""
    first = next(iter(runs.values()))
    dataset = first.cfg.data.dataset
    rows = [[first.image(i), *(colorize(run.predict(i), dataset) for run in runs.values()),
             colorize(first.ground_truth(i), dataset)] for i in indices]
    return panel_grid(rows, ["image", *runs, "ground truth"])[0]


def weak_label_panel(image: np.ndarray, sparse: np.ndarray, dataset: str, num_classes: int) -> np.ndarray:
    """The image, dimmed, with its sparse label's pixels in the palette and enlarged to 3x3 so single points
    show at print size."""
    h, w = sparse.shape
    padded = np.pad(np.where(sparse < num_classes, sparse, IGNORE_INDEX).astype(np.uint8), 1,
                    constant_values=IGNORE_INDEX)
    grown = np.full(sparse.shape, IGNORE_INDEX, np.uint8)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            shifted = padded[dy:dy + h, dx:dx + w]
            grown = np.where(shifted != IGNORE_INDEX, shifted, grown)
    panel = (0.45 * image).astype(np.uint8)
    show = grown != IGNORE_INDEX
    panel[show] = display_palette(dataset)[grown[show]]
    return panel


def weak_grid(runs: dict[str, TrainedRun], indices: list[int]):
    """One row per training image of the first run: the image, its weak label as given (sparse labels drawn on
    the image, image-level labels as the class names), each run's prediction and the ground truth."""
    from reprokit.data.weak_source import WeakLabels

    first = next(iter(runs.values()))
    cfg, dataset = first.cfg.data, first.cfg.data.dataset
    train = first.training_images()
    weak = WeakLabels(cfg)
    rows, names = [], []
    for i in indices:
        sample = train.samples[i]
        image = np.asarray(Image.open(sample.image).convert("RGB"))
        mask = train[i]["mask"].numpy().astype(np.uint8)
        maps, classes = weak.read(sample, mask)
        label = (weak_label_panel(image, maps["sparse"], dataset, cfg.num_classes) if "sparse" in maps
                 else np.full_like(image, 255))
        rows.append([image, label, *(colorize(run.predict(i, train), dataset) for run in runs.values()),
                     colorize(mask, dataset)])
        names.append(None if "sparse" in maps else
                     [first.classes[k] for k in classes.nonzero().flatten().tolist() if k != 0])
    fig, axes = panel_grid(rows, ["image", f"{cfg.label_kind} label", *runs, "ground truth"])
    for r, listed in enumerate(names):  # image-level labels: the class names on the label panel
        if listed is not None:
            axes[r, 1].text(0.5, 0.5, "\n".join(listed) or "background only", ha="center", va="center",
                            transform=axes[r, 1].transAxes, fontsize=8)
    return fig


@torch.no_grad()
def sample_features(run: TrainedRun, per_class: int = 256, seed: int = 0, max_images: int = 500
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``per_class`` decoder features per class from validation pixels (labels taken at the feature
    resolution, ignore left out). The decoder feature is the input of both the classifier and STPG's
    projection head, so supervised and STPG runs are compared on the same representation."""
    feats, labels = [], []
    for i in range(min(len(run.val), max_images)):
        item = run.val[i]
        f = run.net(item["image"][None], return_features=True)["features"][0]
        y = F.interpolate(item["mask"][None, None].float(), size=f.shape[-2:], mode="nearest")[0, 0].long()
        keep = y.reshape(-1) != IGNORE_INDEX
        feats.append(f.reshape(f.shape[0], -1).T[keep])
        labels.append(y.reshape(-1)[keep])
    feats, labels = torch.cat(feats).numpy(), torch.cat(labels).numpy()
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    idx = np.concatenate(chosen)
    return feats[idx], labels[idx]


def tsne_panels(runs: dict[str, TrainedRun], per_class: int = 256, seed: int = 0):
    """Fig. 7: one t-SNE panel per run, points coloured in the data set's display palette with a class legend."""
    from sklearn.manifold import TSNE

    fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 4.5), squeeze=False)
    for ax, (title, run) in zip(axes[0], runs.items()):
        feats, labels = sample_features(run, per_class, seed)
        xy = TSNE(n_components=2, init="pca", perplexity=30, random_state=seed).fit_transform(feats)
        pal = display_palette(run.cfg.data.dataset) / 255.0
        for c in np.unique(labels):
            m = labels == c
            ax.scatter(xy[m, 0], xy[m, 1], s=3, color=pal[c], label=run.classes[c])
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, -1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=4, frameon=False, fontsize=7)
    fig.tight_layout()
    return fig
