"""Config: TOML + --set → typed frozen Config; every bad key/type/range is a one-line error naming the key."""
import subprocess
import sys
from pathlib import Path

import pytest

from rlp_tune.config import Config, ConfigError, load_config, parse_overrides, to_toml

ROOT = Path(__file__).resolve().parents[1]


def test_flat_round_trip_and_fixed_key_names():
    cfg = Config()
    flat = cfg.to_flat()
    for key in ["data.name", "data.root", "data.label_noise", "data.fraction", "model.name", "model.dropout",
                "rlp.lam", "rlp.heads", "rlp.hidden", "rlp.n", "rlp.layers", "rlp.regularize", "optim.name",
                "optim.lr", "optim.momentum", "optim.weight_decay", "optim.warmup_epochs", "optim.clip",
                "optim.label_smoothing", "run.epochs", "run.batch_size", "run.seed", "run.device"]:
        assert key in flat
    assert Config.from_flat(flat) == cfg


def test_overrides_are_typed():
    cfg = load_config(None, ["rlp.lam=1e3", "rlp.heads=4", "rlp.layers=block2,penultimate", "optim.nesterov=true",
                             "run.device=cpu"])
    assert cfg.rlp.lam == 1000.0 and isinstance(cfg.rlp.lam, float)
    assert cfg.rlp.heads == 4 and cfg.rlp.layers == ("block2", "penultimate")
    assert cfg.optim.nesterov is True
    with pytest.raises(AttributeError):
        cfg.rlp.lam = 2.0  # frozen


@pytest.mark.parametrize("override, key", [
    ("rlp.lamda=1", "rlp.lamda"),          # unknown key
    ("rlp.heads=two", "rlp.heads"),        # wrong type
    ("rlp.heads=1.5", "rlp.heads"),        # not an integer
    ("data.label_noise=1.5", "data.label_noise"),  # out of range
    ("optim.lr=0", "optim.lr"),            # open lower bound
    ("optim.name=lion", "optim.name"),     # not a choice
    ("run.device=tpu", "run.device"),
    ("foo.bar=1", "foo.bar"),
])
def test_bad_override_names_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    msg = str(e.value)
    assert msg.startswith(key) and "\n" not in msg


def test_toml_errors_name_the_key(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[rlp]\nlam = "big"\n')
    with pytest.raises(ConfigError, match=r"^rlp\.lam: expected a number"):
        load_config(p)
    p.write_text('[rlpp]\nlam = 1\n')
    with pytest.raises(ConfigError, match=r"^rlpp: unknown config section \(did you mean rlp"):
        load_config(p)


def test_to_toml_round_trips(tmp_path):
    cfg = load_config(None, ["rlp.lam=3.5", "rlp.layers=all", "data.name=synthetic", "optim.betas=[0.8,0.9]"])
    p = tmp_path / "c.toml"
    p.write_text(to_toml(cfg))
    assert load_config(p) == cfg


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    load_config(path)


def test_cli_bad_key_exits_2_with_one_line():
    r = subprocess.run([sys.executable, "-m", "rlp_tune.cli", "train", "--set", "rlp.lamda=1"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "rlp.lamda" in r.stderr


def test_parse_overrides_requires_equals():
    with pytest.raises(ConfigError, match="^rlp.lam: override must look like key=value"):
        parse_overrides(["rlp.lam"])


def test_renamed_key_is_one_line_naming_the_new_one(tmp_path):
    """data.mixup (mixup's α) became data.mixup_alpha, so `lam` names only the RLP λ."""
    for make in (lambda: load_config(overrides=["data.mixup=0.2"]),
                 lambda: Config().replace(**{"data.mixup": 0.2}),
                 lambda: Config.from_dict({"data": {"mixup": 0.2}})):
        with pytest.raises(ConfigError) as e:
            make()
        assert str(e.value) == "data.mixup: renamed to data.mixup_alpha"
    assert load_config(overrides=["data.mixup_alpha=0.2"]).data.mixup_alpha == 0.2


def test_key_constants_are_config_keys():
    from rlp_tune.config import LAM_KEY, N_KEY, NOISE_KEY, all_keys
    assert {LAM_KEY, N_KEY, NOISE_KEY} <= set(all_keys())
