"""Figures that need a trained network: qualitative grids (Figs. 9/10) and t-SNE of features (Fig. 7).
Both read the run directory (config + checkpoint) and the validation images it names."""
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
from reprokit.data.palette import colorize, palette_for  # noqa: E402
from reprokit.engine.evaluate import predict_probs  # noqa: E402
from reprokit.engine.reeval import load_trained_method  # noqa: E402
from reprokit.labels import IGNORE_INDEX  # noqa: E402


class TrainedRun:
    """A run's evaluated network in eval mode, with its validation set."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.cfg, method = load_trained_method(self.run_dir)
        self.net = method.eval_network().eval()
        self.val = SegDataset(resolve_splits(self.cfg.data).val, self.cfg.data, train=False)
        self.classes = class_names(self.cfg.data)

    @torch.no_grad()
    def predict(self, index: int) -> np.ndarray:
        item = self.val[index]
        probs = predict_probs(self.net, item["image"][None], self.cfg.eval,
                              self.cfg.eval_crop_size, self.cfg.data.num_classes)
        return probs.argmax(1)[0].numpy().astype(np.uint8)

    def image(self, index: int) -> np.ndarray:
        return np.asarray(Image.open(self.val.samples[index].image).convert("RGB"))

    def ground_truth(self, index: int) -> np.ndarray:
        return self.val[index]["mask"].numpy().astype(np.uint8)


def qualitative_grid(runs: dict[str, TrainedRun], indices: list[int]):
    """Figs. 9/10: one row per validation image: the image, each run's prediction (one column per label of
    ``runs``, in order) and the ground truth, in the data set's palette."""
    first = next(iter(runs.values()))
    dataset = first.cfg.data.dataset
    cols = ["image", *runs, "ground truth"]
    fig, axes = plt.subplots(len(indices), len(cols), figsize=(2 * len(cols), 2 * len(indices)), squeeze=False)
    for r, i in enumerate(indices):
        panels = [first.image(i), *(colorize(run.predict(i), dataset) for run in runs.values()),
                  colorize(first.ground_truth(i), dataset)]
        for c, panel in enumerate(panels):
            axes[r, c].imshow(panel, interpolation="nearest")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(cols[c])
    fig.tight_layout()
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
    """Fig. 7: one t-SNE panel per run, points coloured in the data set's palette with a class legend."""
    from sklearn.manifold import TSNE

    fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 4.5), squeeze=False)
    for ax, (title, run) in zip(axes[0], runs.items()):
        feats, labels = sample_features(run, per_class, seed)
        xy = TSNE(n_components=2, init="pca", perplexity=30, random_state=seed).fit_transform(feats)
        pal = palette_for(run.cfg.data.dataset) / 255.0
        for c in np.unique(labels):
            m = labels == c
            ax.scatter(xy[m, 0], xy[m, 1], s=3, color=pal[c], label=run.classes[c])
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, -1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=4, frameon=False, fontsize=7)
    fig.tight_layout()
    return fig
