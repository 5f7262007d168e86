"""``PseudoLabelInspector``: an ipywidgets view of a teacher-student method's pseudo-labels.

Controls: image index (slider, previous / next), split, checkpoint, layer toggles and opacity, class
filter, confidence threshold, and the class of per-class heat maps (CAMs, GMM responses). Panels: the
composed view with a legend, per-image statistics, and the batch's per-class mismatch scores. "Export PNG"
writes the current view. Display changes recompose cached arrays (:mod:`reprokit.inspect.core`); only a new
image batch or checkpoint runs the network.
"""
from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from reprokit.viz.palette import display_palette
from reprokit.data.weak_items import WeakLabeledImages
from reprokit.inspect.core import (LABEL_LAYERS, SPARSE_LAYER, MapCache, compose, heat_layer,
                                   image_stats, layer_names, run_checkpoints)
from reprokit.methods.display import CategoryLayer, HeatLayer, LabelLayer


def png_bytes(rgb: np.ndarray, scale: int = 1) -> bytes:
    img = Image.fromarray(rgb)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def scores_png(scores: np.ndarray | None, class_names: list[str]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 2.4), dpi=90)
    if scores is not None:
        ax.bar(range(len(scores)), scores, color="#4c72b0")
        ax.set_xticks(range(len(scores)), class_names, rotation=60, ha="right", fontsize=7)
    ax.set_title("class mismatch scores of this batch (Eq. 5)", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


class PseudoLabelInspector:
    """Build with :meth:`from_run` (a run directory) or directly from a method, datasets and checkpoints;
    display with ``inspector.widget`` (or just leave the object last in a notebook cell)."""

    def __init__(self, cache: MapCache, class_names: list[str], dataset: str, export_dir: str | Path = "figures",
                 scale: int = 6):
        import ipywidgets as w

        self.cache, self.class_names, self.dataset = cache, class_names, dataset
        self.export_dir, self.scale = Path(export_dir), scale
        self.timings: dict[str, float] = {}
        splits, checkpoints = list(cache.splits), list(cache.checkpoints)
        self.split = w.Dropdown(options=splits, value=splits[0], description="split")
        self.checkpoint = w.Dropdown(options=checkpoints, value=checkpoints[-1], description="checkpoint")
        self.index = w.IntSlider(0, 0, len(cache.splits[splits[0]]) - 1, description="image", continuous_update=False)
        self.prev, self.next = w.Button(description="◀ prev"), w.Button(description="next ▶")
        self.layers = {name: w.ToggleButton(value=name in ("teacher pseudo-label", SPARSE_LAYER), description=name,
                                            layout=w.Layout(width="auto"))
                       for name in layer_names(cache.layers, cache.has_sparse)}
        self.opacity = w.FloatSlider(0.6, min=0, max=1, step=0.05, description="opacity", continuous_update=False)
        self.classes = w.SelectMultiple(options=[(n, i) for i, n in enumerate(class_names)],
                                        value=tuple(range(len(class_names))), rows=6, description="classes")
        self.threshold = w.FloatSlider(0.0, min=0, max=1, step=0.01, description="confidence ≥",
                                       continuous_update=False)
        per_class = [m.first_class for m in cache.layers if isinstance(m, HeatLayer) and m.per_class]
        self.heat_class = w.Dropdown(options=[(n, i) for i, n in enumerate(class_names)], description="heat class",
                                     value=min(per_class)) if per_class else None  # offered with per-class maps
        self.export = w.Button(description="Export PNG", icon="download")
        self.view, self.scores = w.Image(format="png"), w.Image(format="png")
        self.legend, self.stats, self.status = w.HTML(), w.HTML(), w.HTML()
        self.prev.on_click(lambda _: self._step(-1))
        self.next.on_click(lambda _: self._step(1))
        self.export.on_click(lambda _: self.export_png())
        self.split.observe(self._on_split, "value")
        for control in (self.checkpoint, self.index):
            control.observe(lambda _: self.refresh("image"), "value")
        heat = [] if self.heat_class is None else [self.heat_class]
        for control in (*self.layers.values(), self.opacity, self.classes, self.threshold, *heat):
            control.observe(lambda _: self.refresh("display"), "value")
        self.widget = w.VBox([
            w.HBox([self.split, self.checkpoint]),
            w.HBox([self.prev, self.index, self.next]),
            w.HBox(list(self.layers.values())),
            w.HBox([self.opacity, self.threshold, *heat, self.export]),
            w.HBox([w.VBox([self.view, self.legend]), w.VBox([self.classes, self.stats, self.scores])]),
            self.status,
        ])
        self.widget.add_class("reprokit-inspector")
        self.refresh("image")

    @classmethod
    def from_run(cls, run_dir: str | Path, splits: tuple[str, ...] | None = None, **kwargs):
        """Open a run directory: its method, its training images (without augmentation: the unlabeled ones, and
        for a run trained on weak labels the weakly labeled ones, carrying those labels) and validation images,
        and every checkpoint it kept (``train.snapshot_every`` snapshots + final). ``splits`` chooses among
        "labeled", "unlabeled" and "val" (default: "labeled" for a weak run, "unlabeled", "val"); a split the run
        has no images in is left out."""
        from reprokit.data.datasets import SegDataset, class_names, resolve_splits
        from reprokit.data.weak_source import ensure_weak_labels
        from reprokit.engine.reeval import load_trained_method

        cfg, method = load_trained_method(Path(run_dir))
        resolved = resolve_splits(cfg.data)
        weak = cfg.data.label_kind != "dense"
        splits = splits or (("labeled",) if weak else ()) + ("unlabeled", "val")
        samples = {"labeled": resolved.labeled, "unlabeled": resolved.unlabeled, "val": resolved.val}
        # the inspector shows unlabeled images' hidden truth; weakly labeled images show their dense mask as
        # ground truth and hand the method the weak labels training read (simulated ones written again,
        # identically, where this copy of the data lacks them)
        roles = {"labeled": "labels", "unlabeled": "hidden", "val": "labels"}
        data = {}
        for s in (s for s in splits if samples[s]):
            if s == "labeled" and weak:
                ensure_weak_labels(cfg.data, samples[s])
                data[s] = WeakLabeledImages(samples[s], cfg.data)
            else:
                data[s] = SegDataset(samples[s], cfg.data, train=False, masks=roles[s])

        def raw_image(split: str, i: int) -> np.ndarray:
            return np.asarray(Image.open(data[split].samples[i].image).convert("RGB"))

        p = method.params
        cache = MapCache(method, data, run_checkpoints(Path(run_dir)), raw_image, cfg.data.batch_size,
                         getattr(p, "cutmix_boxes", 3), tuple(getattr(p, "cutmix_area", (0.25, 0.5))))
        return cls(cache, class_names(cfg.data), cfg.data.dataset, **kwargs)

    # --- state -> view ------------------------------------------------------------------------
    def current(self):
        return self.cache.get(self.checkpoint.value, self.split.value, self.index.value)

    def active_layers(self) -> list[str]:
        return [name for name, toggle in self.layers.items() if toggle.value]

    def selected_classes(self) -> set[int] | None:
        chosen = set(self.classes.value)
        return None if len(chosen) == len(self.class_names) else chosen

    def rendered(self) -> np.ndarray:
        return compose(self.current(), self.active_layers(), self.opacity.value, self.dataset,
                       self.selected_classes(), self.threshold.value, self.cache.layers,
                       None if self.heat_class is None else self.heat_class.value)

    def current_stats(self) -> dict:
        return image_stats(self.current(), self.threshold.value, len(self.class_names), self.cache.layers)

    def refresh(self, kind: str = "display") -> None:
        """Redraw; ``kind`` names what changed ("image" may run the network, "display" never does)."""
        start = time.perf_counter()
        maps = self.current()
        self.view.value = png_bytes(self.rendered(), self.scale)
        stats = self.current_stats()
        self.stats.value = self._stats_html(stats) + self._histogram_html(stats)
        self.legend.value = self._legend_html()
        if kind == "image":
            self.scores.value = scores_png(maps.scores, self.class_names)
        self.timings[kind] = time.perf_counter() - start
        self.status.value = (f"<small>{self.split.value} #{self.index.value} @ {self.checkpoint.value}: "
                             f"updated in {1000 * self.timings[kind]:.0f} ms; network passes so far: "
                             f"{self.cache.forward_passes}</small>")

    def export_png(self) -> Path:
        self.export_dir.mkdir(parents=True, exist_ok=True)
        name = f"inspector_{self.split.value}_{self.index.value}_{self.checkpoint.value.replace(' ', '')}.png"
        path = self.export_dir / name
        path.write_bytes(png_bytes(self.rendered(), self.scale))
        self.status.value += f"<br><small>exported {path}</small>"
        return path

    # --- control handlers ---------------------------------------------------------------------
    def _step(self, delta: int) -> None:
        self.index.value = int(np.clip(self.index.value + delta, self.index.min, self.index.max))

    def _on_split(self, _) -> None:
        self.index.max = len(self.cache.splits[self.split.value]) - 1
        self.index.value = min(self.index.value, self.index.max)
        self.refresh("image")

    def _legend_html(self) -> str:
        active, items = self.active_layers(), []
        active_kinds = {type(m) for m in self.cache.layers if m.title in active}
        for layer in self.cache.layers:
            if layer.title in active and isinstance(layer, CategoryLayer):
                items += list(zip(layer.colours, layer.names))
        pal = display_palette(self.dataset)
        shown = self.selected_classes() or set(range(len(self.class_names)))
        if LabelLayer in active_kinds or any(layer in active for layer in (*LABEL_LAYERS, SPARSE_LAYER)):
            items += [(pal[c], self.class_names[c]) for c in sorted(shown)]
        if LabelLayer in active_kinds:
            items.append((pal[255], "ignored"))
        if HeatLayer in active_kinds or "confidence" in active:
            scale = heat_layer(np.array([0.0, 0.5, 1.0]))[0]
            items += [(scale[0], "score 0"), (scale[1], "0.5"), (scale[2], "1")]
        return " ".join(f"<span style='display:inline-block;margin:1px 4px'><span style='display:inline-block;"
                        f"width:10px;height:10px;background:rgb{tuple(int(v) for v in colour)}'></span> {name}</span>"
                        for colour, name in items)

    @staticmethod
    def _stats_html(stats: dict) -> str:
        rows = [("pixels", stats["pixels"]), ("kept at threshold", stats["kept"])]
        rows += [(k, f"{100 * v:.1f} %" if v == v else "-") for k, v in stats.items() if k.startswith("accuracy")]
        rows += [(k, v) for k, v in stats.items() if k.startswith("pixels ")]
        body = "".join(f"<tr><td>{k}</td><td style='text-align:right'>{v}</td></tr>" for k, v in rows)
        return f"<table class='reprokit-stats'>{body}</table>"

    def _histogram_html(self, stats: dict) -> str:
        """Pseudo-label class histogram of the image: one bar per class present, in the palette's colour."""
        pal, hist = display_palette(self.dataset), stats["histogram"]
        total = max(int(hist.sum()), 1)
        rows = "".join(
            f"<tr><td>{self.class_names[c]}</td><td><span style='display:inline-block;height:9px;"
            f"width:{int(120 * n / total)}px;background:rgb{tuple(int(v) for v in pal[c])}'></span> {int(n)}</td></tr>"
            for c, n in enumerate(hist) if n)
        return f"<b>pseudo-label classes</b><table class='reprokit-histogram'>{rows}</table>"

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
