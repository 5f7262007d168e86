import dataclasses
import re
import typing
from pathlib import Path

import pytest

from reprokit.config import ConfigError, read_yaml
from reprokit.configure import from_dict, load_config
from reprokit.methods import build_method


def test_defaults_need_iters_or_epochs():
    with pytest.raises(ConfigError, match="train.iters and train.epochs"):
        load_config()


def test_unknown_key_is_named(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  iters: 5\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown config key 'train.lr'"):
        load_config(f)


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"'data.batch_size': expected int, got str"):
        from_dict({"train": {"iters": 1}, "data": {"batch_size": "eight"}})


def test_unknown_method_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown config key 'method.lamda_u'"):
        from_dict({"train": {"iters": 1}, "method": {"name": "supervised", "lamda_u": 1}})


def test_base_inheritance_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("data:\n  batch_size: 4\n  crop_size: 32\ntrain:\n  iters: 10\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\ndata:\n  crop_size: 48\n")
    cfg = load_config(tmp_path / "child.yaml", ["train.iters=20", "optim.lr=0.5"])
    assert (cfg.data.batch_size, cfg.data.crop_size, cfg.train.iters, cfg.optim.lr) == (4, 48, 20, 0.5)


def test_hash_is_stable_and_sensitive():
    a = from_dict({"train": {"iters": 1, "seed": 0}, "data": {"crop_size": 32}})
    b = from_dict({"data": {"crop_size": 32}, "train": {"seed": 0, "iters": 1}})
    c = from_dict({"data": {"crop_size": 33}, "train": {"seed": 0, "iters": 1}})
    assert a.hash() == b.hash() != c.hash()


def test_choice_validation():
    with pytest.raises(ConfigError, match="train.amp"):
        from_dict({"train": {"iters": 1, "amp": "fp8"}})


PARAMS = Path(__file__).resolve().parents[1] / "params"


OVERLAYS = {"protocol.yaml"}  # partial files listed last in a cell's _base_ (like params/rows/)
CELLS = sorted(p for p in PARAMS.rglob("*.yaml") if "rows" not in p.parts and "sweeps" not in p.parts
               and p.name not in OVERLAYS)


@pytest.mark.parametrize("path", CELLS, ids=lambda p: str(p.relative_to(PARAMS)))
def test_every_params_file_resolves(path):
    """Every shipped parameter file (table cells, ablation rows per data set) is a valid config."""
    cfg = load_config(path)
    if "table5" in path.parts:
        assert cfg.method_name == "stpg" and set(cfg.method.pixel_selection) <= {"cons", "hmis", "lmis"}


def test_the_frozen_digits_protocol_reaches_every_digits_cell():
    """Same initialisation and schedule for every digits cell, but for the image-label rows, whose schedule and
    network the CAM seed's admission rule chose (8000 steps, stride 4); the protocol overlay on every
    semi-supervised one (a cell that forgot it would compare methods under different protocols)."""
    overlay = read_yaml(PARAMS / "digits" / "protocol.yaml")["method"]
    digits = [p for p in CELLS if "digits" in p.parts]
    assert len(digits) > 15
    for path in digits:
        cfg = load_config(path)
        image_labels = cfg.data.label_kind == "image" or path.name == "image.yaml"  # the rows' shared base
        assert (cfg.model.pretrained, cfg.train.iters, cfg.model.stem_maxpool) == \
            ("glyphs", 8000 if image_labels else 4000, not image_labels), path
        if cfg.method_name != "supervised" and cfg.data.label_kind == "dense":  # weak rows train no unlabeled images
            assert not cfg.data.strong_photometric, path
            for key in ("cutmix_boxes", "unsup_start", "unsup_ramp", "strong_bn_update"):
                assert getattr(cfg.method, key) == overlay[key], (path, key)
    assert (overlay["cutmix_boxes"], overlay["unsup_start"], overlay["strong_bn_update"]) == (1, 0.2, False)


def test_base_list_merges_in_order_and_method_name_replaces_block(tmp_path):
    (tmp_path / "a.yaml").write_text("method: {name: stpg, tau: 0.3}\ntrain: {iters: 5}\n")
    (tmp_path / "b.yaml").write_text("method: {name: supervised}\n")
    (tmp_path / "c.yaml").write_text("_base_: [a.yaml, b.yaml]\ntrain: {seed: 3}\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.method_name == "supervised" and not hasattr(cfg.method, "tau")
    assert cfg.train.iters == 5 and cfg.train.seed == 3


@pytest.mark.parametrize("override,message", [
    ("train.iters=-5", "'train.iters': expected a value >= 1, got -5"),
    ("train.ckpt_every=0", "'train.ckpt_every': expected a value >= 1, got 0"),
    ("train.log_every=0", "'train.log_every': expected a value >= 1"),
    ("data.batch_size=0", "'data.batch_size': expected a value >= 1"),
    ("optim.lr=0", "'optim.lr': expected a value > 0, got 0.0"),
    ("optim.lr=.nan", "'optim.lr': expected a value > 0, got nan"),
    ("optim.momentum=1.0", "'optim.momentum': expected a value in [0, 1), got 1.0"),
    ("data.labeled_fraction=1.5", "'data.labeled_fraction': expected a value in (0, 1], got 1.5"),
    ("data.scale_range=[-1,2]", "'data.scale_range': expected numbers each > 0, got [-1, 2]"),
    ("data.scale_range=[2,1]", "'data.scale_range': expected [low, high] with low <= high"),
    ("eval.stride_ratio=0", "'eval.stride_ratio': expected a value in (0, 1]"),
    ("method.ema_momentum=1.5", "'method.ema_momentum': expected a value in [0, 1], got 1.5"),
    ("method.phi=-0.1", "'method.phi': expected a value in [0, 1]"),
    ("method.tau=0", "'method.tau': expected a value > 0"),
    ("method.bank_start=2", "'method.bank_start': expected a value in [0, 1], got 2.0"),
    ("method.cutmix_area=[0.5,0.25]", "'method.cutmix_area': expected [low, high] with low <= high"),
])
def test_numeric_settings_out_of_range_are_refused_naming_key_and_range(override, message):
    overrides = ["train.iters=10", "method.name=stpg", override]
    with pytest.raises(ConfigError, match=re.escape(message)):
        cfg = load_config(None, overrides)
        build_method(cfg, cfg.data.num_classes)  # pair orders of method settings are checked here


def test_a_threshold_above_one_is_refused():
    with pytest.raises(ConfigError, match=re.escape("'method.threshold': expected a value in [0, 1], got 1.01")):
        load_config(None, ["train.iters=10", "method.name=fixmatch", "method.threshold=1.01"])


def _setting_classes():
    from reprokit.config import Config
    from reprokit.methods import method_class, registry

    seen, todo = [], [Config] + [method_class(name).Params for name in registry()]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo += [h for h in typing.get_type_hints(cls).values() if dataclasses.is_dataclass(h)]
    return seen


def test_every_numeric_setting_declares_a_range_that_holds_its_default():
    for cls in _setting_classes():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            hint = str(hints[f.name])
            numeric = any(t in hint for t in ("int", "float")) or f.name in (
                "scale_range", "scale_choices", "mean", "std", "aspp_rates", "scales", "blur_sigma", "cutmix_area")
            if not numeric:
                continue
            allowed = f.metadata.get("range")
            assert allowed is not None, f"{cls.__name__}.{f.name} has no declared range"
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            assert default is None or all(v in allowed for v in (default if isinstance(default, list) else [default]))


def test_cli_refuses_out_of_range_settings_before_creating_anything(tmp_path, capsys):
    from reprokit.cli import main

    for override in ("train.iters=-5", "train.ckpt_every=0"):
        assert main(["train", "--set", "train.iters=3", "--set", override, "--out", str(tmp_path / "run")]) == 2
        assert f"config key '{override.split('=')[0]}': expected a value >= 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_config_does_not_import_the_methods_and_method_params_are_typed(tmp_path):
    """The method block is resolved one layer up (reprokit.configure), so config and methods import one way."""
    import subprocess
    import sys

    from reprokit.methods.stpg import STPGParams

    code = "import sys, reprokit.config; print('reprokit.methods' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1]).stdout.strip() == "False"
    (tmp_path / "c.yaml").write_text("method: {name: stpg, tau: 0.3}\ntrain: {iters: 5}\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert isinstance(cfg.method, STPGParams) and cfg.method.tau == 0.3 and cfg.to_dict()["method"]["tau"] == 0.3


# settings whose text is not a choice: the method's name (its own check), weights files, lists of numbers
FREE_TEXT = {"name", "vit_weights", "pseudo_scales", "cutmix_area"}


def test_every_method_choice_is_checked_when_the_config_is_loaded():
    """A misspelt choice of any method fails at load, naming the key, before data or networks exist; and every
    text setting of a method is either a declared choice or listed here as free text."""
    from reprokit.methods import registry

    for name, entry in registry().items():
        hints = typing.get_type_hints(entry.cls.Params)
        for field in dataclasses.fields(entry.cls.Params):
            if "choices" in field.metadata:
                bad = ["typo"] if hints[field.name] is list else "typo"
                with pytest.raises(ConfigError, match=rf"config key 'method.{field.name}': expected .*one of "
                                                      rf"\[.*\], got {re.escape(repr(bad))}"):
                    from_dict({"method": {"name": name, field.name: bad}, "train": {"iters": 1}})
                default = field.default_factory() if field.default_factory is not dataclasses.MISSING \
                    else field.default
                assert all(v in field.metadata["choices"] for v in (default if isinstance(default, list) else [default]))
            elif hints[field.name] in (str, typing.Optional[str], list):
                assert field.name in FREE_TEXT, f"{name}: method.{field.name} is text: declare its choices (chosen)"


def test_settings_across_fields_are_checked_when_the_config_is_loaded():
    with pytest.raises(ConfigError, match="'pro' needs method.dual_teacher"):
        from_dict({"method": {"name": "stpg", "bank_teacher": "pro", "dual_teacher": False}, "train": {"iters": 1}})
    with pytest.raises(ConfigError, match="non-empty subset"):
        from_dict({"method": {"name": "stpg", "pixel_selection": []}, "train": {"iters": 1}})
    with pytest.raises(ConfigError, match="every loss term"):
        from_dict({"method": {"name": "agmm", "seg": False, "gmm": False, "proto": False, "cls": False},
                   "train": {"iters": 1}})
