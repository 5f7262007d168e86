from pathlib import Path

import pytest

from reprokit.config import ConfigError, from_dict, load_config, read_yaml


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
        assert cfg.method_name == "stpg" and set(cfg.method["pixel_selection"]) <= {"cons", "hmis", "lmis"}


def test_the_frozen_digits_protocol_reaches_every_digits_cell():
    """Same initialisation and schedule for every digits cell; the protocol overlay on every semi-supervised
    one (a cell that forgot it would compare methods under different protocols)."""
    overlay = read_yaml(PARAMS / "digits" / "protocol.yaml")["method"]
    digits = [p for p in CELLS if "digits" in p.parts]
    assert len(digits) > 15
    for path in digits:
        cfg = load_config(path)
        assert (cfg.model.pretrained, cfg.train.iters) == ("glyphs", 4000), path
        if cfg.method_name != "supervised":
            assert not cfg.data.strong_photometric, path
            for key in ("cutmix_boxes", "unsup_start", "unsup_ramp", "strong_bn_update"):
                assert cfg.method[key] == overlay[key], (path, key)
    assert (overlay["cutmix_boxes"], overlay["unsup_start"], overlay["strong_bn_update"]) == (1, 0.2, False)


def test_base_list_merges_in_order_and_method_name_replaces_block(tmp_path):
    (tmp_path / "a.yaml").write_text("method: {name: stpg, tau: 0.3}\ntrain: {iters: 5}\n")
    (tmp_path / "b.yaml").write_text("method: {name: supervised}\n")
    (tmp_path / "c.yaml").write_text("_base_: [a.yaml, b.yaml]\ntrain: {seed: 3}\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.method_name == "supervised" and "tau" not in cfg.method
    assert cfg.train.iters == 5 and cfg.train.seed == 3
