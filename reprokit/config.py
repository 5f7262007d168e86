"""Typed experiment configuration: YAML in, validated dataclasses out, and a stable hash.

Every run is described by one :class:`Config`. Parameter files may inherit from another file
with ``_base_: relative/path.yaml`` (or a list: a data set's base plus an ablation row's overlay) so
that a table cell only states what differs from its family.
Unknown keys and wrongly typed values are rejected with the dotted key's name, because a typo in
a week-long GPU run should fail in the first second, not after the run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import yaml


class ConfigError(ValueError):
    """Bad user configuration; the message names the file and/or key at fault."""


@dataclass(frozen=True)
class Range:
    """The values a numeric setting accepts (for a list of numbers: each element). Declared on the field,
    checked when a config is loaded, so a negative step count or a zero interval fails in the first second,
    naming the key, instead of running zero steps or dividing by zero later."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False  # True: ``low`` itself is outside
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = self.low is None or value > self.low or (value == self.low and not self.low_open)
        below = self.high is None or value < self.high or (value == self.high and not self.high_open)
        return math.isfinite(value) and above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"


COUNT = Range(1)  # steps, intervals, batch sizes, channels, classes
NON_NEGATIVE = Range(0)  # seeds, loss weights, "every N steps" where 0 switches the feature off
POSITIVE = Range(0, low_open=True)  # rates, scales, temperatures
PROBABILITY = Range(0, 1)  # probabilities, thresholds, fractions of training, EMA momenta
FRACTION = Range(0, 1, low_open=True)  # a non-empty part of a whole
MOMENTUM = Range(0, 1, high_open=True)  # SGD momentum, dropout


def ranged(allowed: Range, default: Any = None, factory: Any = None) -> Any:
    """A dataclass field whose value (or each element of it) must lie in ``allowed``."""
    if factory is not None:
        return field(default_factory=factory, metadata={"range": allowed})
    return field(default=default, metadata={"range": allowed})


def chosen(allowed: tuple, default: Any = None, factory: Any = None) -> Any:
    """A dataclass field whose value (or each element of a list) must be one of ``allowed``: checked when a
    config is loaded, so a misspelt choice fails before any data is prepared."""
    if factory is not None:
        return field(default_factory=factory, metadata={"choices": tuple(allowed)})
    return field(default=default, metadata={"choices": tuple(allowed)})


@dataclass
class StrongViewConfig:
    """Photometric part of the strong view (applied before CutMix). Each op fires with its probability;
    a probability of 0 removes the op. Defaults are the usual FixMatch/UniMatch-style values sized for
    photographs; the STPG paper uses CutMix only (``data.strong_photometric: false``)."""

    jitter_p: float = ranged(PROBABILITY, 0.8)
    brightness: float = ranged(PROBABILITY, 0.5)  # factors are drawn from [1 - b, 1 + b]: b <= 1 keeps them >= 0
    contrast: float = ranged(PROBABILITY, 0.5)
    saturation: float = ranged(PROBABILITY, 0.5)
    hue: float = ranged(Range(0, 0.5), 0.25)
    grayscale_p: float = ranged(PROBABILITY, 0.2)
    blur_p: float = ranged(PROBABILITY, 0.5)
    blur_sigma: list = ranged(POSITIVE, factory=lambda: [0.1, 2.0])


LABEL_KINDS = ("dense", "image", "points", "scribbles", "clicks")
SPARSE_KINDS = ("points", "scribbles", "clicks")  # label maps with few labeled pixels (value C: unlabeled)


@dataclass
class DataConfig:
    dataset: str = "digits"  # digits | voc | cityscapes
    root: str = "data/digits"
    num_classes: int = ranged(COUNT, 11)
    voc_layout: str = "aug"  # aug (SegmentationClassAug, 10582 ids) | classic (1464 fine masks)
    # Split: explicit list files, or drawn from split_seed with a count or fraction of the train list.
    train_list: Optional[str] = None  # pool the split is drawn from; defaults to the dataset's train list
    labeled_list: Optional[str] = None
    unlabeled_list: Optional[str] = None
    val_list: Optional[str] = None
    labeled_count: Optional[int] = ranged(COUNT)
    labeled_fraction: Optional[float] = ranged(FRACTION)
    split_seed: int = ranged(NON_NEGATIVE, 0)
    split_family: str = "drawn"  # recorded with results: which published list family the split came from
    # The kind of label the labeled images train on (a method declares the kinds it accepts): dense masks,
    # image-level class sets, or sparse labels (points, scribbles, Cityscapes clicks, ``clicks`` per image).
    # Weak labels come from the data set's files or are simulated from its masks (reprokit.data.weak_labels).
    label_kind: str = "dense"  # dense | image | points | scribbles | clicks
    clicks: int = ranged(COUNT, 100)  # clicks per image for label_kind clicks (the public sets: 20, 50, 100)
    # Where weak labels come from: "files" (the data set's own: VOC point/ and scribble/ maps, Cityscapes click
    # folders, an image-label list), "simulated" (from the masks, deterministic from weak_seed, written once
    # under <root>/simulated/seed<weak_seed>/ in the public files' layout), or "auto" (simulated for the digit
    # scenes, the files otherwise).
    weak_source: str = "auto"
    # seed of simulated weak labels; None: data.split_seed, so a sweep with split_per_seed gives each seed its own
    # simulated labels, as it gives each its own labeled split
    weak_seed: Optional[int] = ranged(NON_NEGATIVE)
    image_label_list: Optional[str] = None  # "<id> <class> <class> ..." per line; default: from the masks
    # Weak augmentation.
    crop_size: int = ranged(COUNT, 64)
    scale_range: list = ranged(POSITIVE, factory=lambda: [0.5, 2.0])
    scale_choices: Optional[list] = ranged(POSITIVE)  # discrete scales (STPG code: 0.5 .. 2.0); overrides scale_range
    flip: bool = True
    strong_photometric: bool = True  # colour jitter / grayscale / blur in the strong view (STPG paper: CutMix only)
    strong: StrongViewConfig = field(default_factory=StrongViewConfig)  # magnitudes when strong_photometric
    mean: list = ranged(PROBABILITY, factory=lambda: [0.485, 0.456, 0.406])
    std: list = ranged(POSITIVE, factory=lambda: [0.229, 0.224, 0.225])
    batch_size: int = ranged(COUNT, 8)  # labeled images per step and process
    unlabeled_batch_size: Optional[int] = ranged(COUNT)  # defaults to batch_size
    num_workers: int = ranged(NON_NEGATIVE, 0)


@dataclass
class ModelConfig:
    backbone: str = "resnet18"  # resnet18 | resnet34 | resnet50 | resnet101
    # None or "none" (from scratch) | "imagenet" (torchvision weights, width 64 only) | "glyphs" (the embedded
    # pretraining for this backbone, built on first use and cached: reprokit.models.pretrain) | path to a .pth file
    pretrained: Optional[str] = None
    width: int = ranged(COUNT, 64)  # first-stage channels; < 64 builds a narrow ResNet-18/34 (the CPU default)
    output_stride: int = ranged(Range(8, 16), 16)  # 8 or 16 (see validate)
    aspp_rates: list = ranged(COUNT, factory=lambda: [6, 12, 18])
    aspp_channels: int = ranged(COUNT, 256)
    decoder_channels: int = ranged(COUNT, 256)
    low_level_channels: int = ranged(COUNT, 48)
    proj_dim: int = ranged(NON_NEGATIVE, 0)  # 0 = no projection head
    stem_maxpool: bool = True  # False keeps more resolution for tiny (64 px) inputs
    sync_bn: bool = False
    dropout: float = ranged(MOMENTUM, 0.1)


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adamw (CoSA: betas 0.9 / 0.999)
    lr: float = ranged(POSITIVE, 0.01)
    momentum: float = ranged(MOMENTUM, 0.9)  # SGD only
    weight_decay: float = ranged(NON_NEGATIVE, 1e-4)
    decay_norms: bool = False  # weight decay on norm weights and biases too (CoSA's code decays every parameter)
    head_lr_mult: float = ranged(POSITIVE, 1.0)
    poly_power: float = ranged(NON_NEGATIVE, 0.9)
    warmup_iters: int = ranged(NON_NEGATIVE, 0)  # linear warm-up from 1e-6 of the rate, under the poly decay
    nesterov: bool = False


@dataclass
class TrainConfig:
    seed: int = ranged(NON_NEGATIVE, 0)
    iters: Optional[int] = ranged(COUNT)
    epochs: Optional[int] = ranged(COUNT)  # converted with iters_per_epoch = unlabeled (or labeled) images // batch
    amp: str = "none"  # none | bf16 | fp16
    channels_last: bool = False
    deterministic: bool = True
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    ckpt_every: int = ranged(COUNT, 100)
    # keep the method's weights every N steps in snapshots/ (the inspector's checkpoints); 0 = never
    snapshot_every: int = ranged(NON_NEGATIVE, 0)
    log_every: int = ranged(COUNT, 10)
    threads: Optional[int] = ranged(COUNT)  # torch CPU threads; None keeps torch's default


@dataclass
class EvalConfig:
    mode: str = "whole"  # whole | center | sliding
    crop_size: Optional[int] = ranged(COUNT)  # defaults to data.crop_size
    stride_ratio: float = ranged(FRACTION, 2 / 3)
    scales: list = ranged(POSITIVE, factory=lambda: [1.0])
    flip: bool = False
    batch_size: int = ranged(COUNT, 16)
    keep_predictions: int = ranged(NON_NEGATIVE, 0)  # val predictions saved in the run dir (qualitative figures)
    # CoSA's reported protocol: classes absent from a val image's TRUE labels (its mask) cannot be predicted
    # there (background always can). It uses ground truth at test time, so it is named wherever it is used.
    mask_absent_classes: bool = False


@dataclass
class MethodParams:
    """What the parameters of every method share; each method extends it with its own dataclass
    (``Method.Params``, with ranges and defaults). A config's ``method:`` block becomes that dataclass in
    :mod:`reprokit.configure`, the layer above this module and the methods, so neither imports the other."""

    name: str = "supervised"

    def check(self) -> None:
        """Checks that relate several fields, run when the config is loaded (one field's range or choices
        are declared on the field itself); a method's parameters extend it."""


@dataclass
class Config:
    name: str = "run"
    method: MethodParams = field(default_factory=MethodParams)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def eval_crop_size(self) -> int:
        """The evaluation crop: ``eval.crop_size``, by default the training crop."""
        return self.eval.crop_size or self.data.crop_size

    def hash(self) -> str:
        """Stable 12-hex-digit digest of the resolved configuration (key order independent)."""
        return config_digest(self.to_dict())

    @property
    def method_name(self) -> str:
        return self.method.name


def config_digest(mapping: dict) -> str:
    """The digest :meth:`Config.hash` uses, of any config mapping (sweeps also digest the settings a params
    file spells out with it, defaults left out)."""
    text = json.dumps(mapping, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _check_type(value: Any, annotation: Any, key: str) -> Any:
    """Return ``value`` coerced to ``annotation`` or raise naming ``key``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _check_type(value, args[0], key)
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif annotation is list or origin is list:
        if isinstance(value, (list, tuple)):
            return list(value)
    elif annotation is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
    else:
        return value
    name = getattr(annotation, "__name__", str(annotation))
    raise ConfigError(f"config key '{key}': expected {name}, got {type(value).__name__} {value!r}")


def _build(cls: type, raw: dict, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.')}': expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = set(fields)
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}' (known keys here: {', '.join(sorted(names))})"
        )
    kwargs = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            value = _check_range(_check_type(value, hint, prefix + name), fields[name].metadata.get("range"),
                                 prefix + name)
            kwargs[name] = _check_choice(value, fields[name].metadata.get("choices"), prefix + name)
    return cls(**kwargs)


def _check_choice(value: Any, allowed: Optional[tuple], key: str) -> Any:
    """Return ``value`` if it (each element, for a list) is one of ``allowed``; else raise naming ``key``."""
    if allowed is None or value is None:
        return value
    for v in value if isinstance(value, list) else [value]:
        if v not in allowed:
            raise ConfigError(f"config key '{key}': expected {'each to be ' if isinstance(value, list) else ''}"
                              f"one of {list(allowed)}, got {value!r}")
    return value


def _check_range(value: Any, allowed: Optional[Range], key: str) -> Any:
    """Return ``value`` if it (each element, for a list) lies in ``allowed``; else raise naming ``key``."""
    if allowed is None or value is None:
        return value
    for v in value if isinstance(value, list) else [value]:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v not in allowed:
            what = "numbers each" if isinstance(value, list) else "a value"
            raise ConfigError(f"config key '{key}': expected {what} {allowed}, got {value!r}")
    return value


def deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "method":
            out[key] = deep_merge(out[key], value)
        elif key == "method" and isinstance(value, dict) and isinstance(out.get(key), dict):
            # a different method name replaces the method block, the same name refines it
            same = value.get("name", out[key].get("name")) == out[key].get("name")
            out[key] = deep_merge(out[key], value) if same else dict(value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path, _seen: tuple = ()) -> dict:
    """Read a parameter file, resolving ``_base_`` inheritance (a path or a list of paths relative to the
    file, merged in order, then the file itself on top)."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: _base_ inheritance cycle")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at top level, got {type(raw).__name__}")
    bases = raw.pop("_base_", None)
    merged: dict = {}
    for base in [bases] if isinstance(bases, str) else bases or []:
        merged = deep_merge(merged, read_yaml(path.parent / base, _seen + (path,)))
    return deep_merge(merged, raw)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (['a','b','c'], yaml-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected key=value, e.g. train.iters=100")
    key, value = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    raw = json.loads(json.dumps(raw))  # deep copy of plain data
    for text in overrides or []:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{text}': '{k}' is not a section")
        node[keys[-1]] = value
    return raw


def build_config(raw: dict, source: str, method_params: Callable[[dict], MethodParams]) -> Config:
    """Validate a plain mapping into a :class:`Config`; errors name ``source`` and the key.
    ``method_params`` turns the ``method:`` block into its method's parameter dataclass (the method registry
    does: :func:`reprokit.configure.from_dict`)."""
    try:
        sections = {k: v for k, v in raw.items() if k != "method"} if isinstance(raw, dict) else raw
        cfg = _build(Config, sections, "")
        cfg.method = method_params(raw.get("method", {"name": "supervised"}))
        validate(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return cfg


def validate(cfg: Config) -> None:
    choices = {
        "data.voc_layout": (cfg.data.voc_layout, {"aug", "classic"}),
        "data.label_kind": (cfg.data.label_kind, set(LABEL_KINDS)),
        "optim.name": (cfg.optim.name, {"sgd", "adamw"}),
        "data.weak_source": (cfg.data.weak_source, {"auto", "files", "simulated"}),
        "model.backbone": (cfg.model.backbone, {"resnet18", "resnet34", "resnet50", "resnet101"}),
        "model.output_stride": (cfg.model.output_stride, {8, 16}),
        "train.amp": (cfg.train.amp, {"none", "bf16", "fp16"}),
        "eval.mode": (cfg.eval.mode, {"whole", "center", "sliding"}),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"config key '{key}': {value!r} is not one of {sorted(allowed, key=str)}")
    if cfg.model.width != 64 and cfg.model.backbone not in ("resnet18", "resnet34"):
        raise ConfigError("config key 'model.width': a width other than 64 needs backbone resnet18 or resnet34")
    if cfg.model.pretrained == "none":  # spelled out in params files; one value for "from scratch" in the hash
        cfg.model.pretrained = None
    if cfg.model.width != 64 and cfg.model.pretrained == "imagenet":
        raise ConfigError(f"config key 'model.pretrained': 'imagenet' needs model.width 64 (torchvision has no "
                          f"ImageNet weights for width {cfg.model.width}); use 'glyphs', a weights file or none")
    if cfg.data.labeled_count is not None and cfg.data.labeled_fraction is not None:
        raise ConfigError("give data.labeled_count or data.labeled_fraction, not both")
    if (cfg.train.iters is None) == (cfg.train.epochs is None):
        raise ConfigError("set exactly one of train.iters and train.epochs")
    check_interval("data.strong.blur_sigma", cfg.data.strong.blur_sigma)
    check_interval("data.scale_range", cfg.data.scale_range)
    for key in ("mean", "std"):
        if len(getattr(cfg.data, key)) != 3:
            raise ConfigError(f"config key 'data.{key}': expected one value per RGB channel, "
                              f"got {getattr(cfg.data, key)}")


def check_interval(key: str, value: list) -> None:
    """A [low, high] pair of numbers (their range is checked on load) must be in order."""
    if len(value) != 2 or value[0] > value[1]:
        raise ConfigError(f"config key '{key}': expected [low, high] with low <= high, got {value}")


def dataclass_from_mapping(cls: type, raw: dict, prefix: str) -> Any:
    """Public helper for method parameter blocks (same validation as the main config)."""
    return _build(cls, raw, prefix)
