"""One typed, frozen config object that flows from TOML / `--set` to every worker.

    cfg = load_config("configs/digits_mlp.toml", overrides=["rlp.lam=1e3", "rlp.layers=penultimate,block2"])
    flat = cfg.to_flat()            # {"rlp.lam": 1000.0, ...}: the same dotted keys as TOML, search spaces, Parquet
    cfg2 = Config.from_flat(flat)   # round-trips exactly

Every key is validated before any work starts: an unknown key, a wrong type or an out-of-range
value raises `ConfigError` whose one-line message names the dotted key.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError


class ConfigError(UserError, ValueError):
    """A bad config value. `str(err)` is one line that names the dotted key."""


def _f(default, *, choices=None, lo=None, hi=None, lo_open=False, doc=""):
    meta = {"choices": choices, "lo": lo, "hi": hi, "lo_open": lo_open, "doc": doc}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda d=tuple(default): d, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Data:
    name: str = _f("digits", doc="registered dataset (rlp_tune.data.list_datasets())")
    root: str = _f("", doc="folder holding the dataset files; never downloaded")
    label_noise: float = _f(0.0, lo=0.0, hi=1.0, doc="p: each train label replaced by a uniform class w.p. p")
    fraction: float = _f(1.0, lo=0.0, hi=1.0, lo_open=True, doc="seeded stratified subset of the train set")
    val_fraction: float = _f(0.0, lo=0.0, hi=0.5, doc="stratified validation split held out of train")
    augment: str = _f("none", choices=("none", "flip", "crop_flip", "crop", "benign", "randaugment"),
                      doc="batched on-device augmentation (benign = 003's suite)")
    augment_strength: float = _f(0.5, lo=0.0, hi=1.0, doc="RandAugment-style magnitude (augment = randaugment)")
    augment_sets: int = _f(0, lo=0, doc="B fixed augmentations per sample, drawn once (0 = fresh every step)")
    augment_labels: str = _f("shared", choices=("shared", "independent"),
                             doc="with augment_sets: views share the sample's label, or noisy samples get one per view")
    mixup: float = _f(0.0, lo=0.0, doc="mixup Beta(α, α) on the class loss (0 = off)")
    random_classes: int = _f(0, lo=0, doc="label noise draws from this many classes (0 = the dataset's)")
    seed: int = _f(-1, lo=-1, doc="data seed (noise, fraction, val split); -1 = run.seed")
    synthetic_size: int = _f(512, lo=8, doc="train samples of the `synthetic` dataset")
    image_size: int = _f(0, lo=0, doc="resize images to this (0 = native); streamed folders need it")
    workers: int = _f(4, lo=0, doc="DataLoader workers for streamed (image-folder) datasets")


@dataclass(frozen=True)
class Model:
    name: str = _f("mlp", doc="registered model (rlp_tune.models.list_models())")
    dropout: float = _f(0.0, lo=0.0, hi=1.0, doc="dropout probability (model-specific placement)")
    width: int = _f(256, lo=1, doc="mlp hidden width")
    depth: int = _f(2, lo=1, doc="mlp hidden layers; wrn depth for model.name = 'wrn'")
    widen: int = _f(4, lo=1, doc="wrn widening factor for model.name = 'wrn'")
    projector_hidden: int = _f(0, lo=0, doc="MLP projector hidden width before the classifier (0 = none)")
    channels_last: bool = _f(False, doc="channels_last memory format (pays on GPUs)")


@dataclass(frozen=True)
class RLP:
    lam: float = _f(0.0, lo=0.0, doc="λ: strength of L_reg on the feature extractor")
    heads: int = _f(1, lo=0, doc="parallel heads per tap, each with its own random-label table (0 = no RLP)")
    hidden: int = _f(0, lo=0, doc="hidden width of the head (0 = linear)")
    n: int = _f(10, lo=2, doc="number of random labels (clipped to m for labels='unique')")
    layers: tuple[str, ...] = _f(("penultimate",), doc="taps with RLP heads, or 'all'")
    regularize: tuple[str, ...] = _f(("penultimate",), doc="taps whose L_reg is applied ('all' = every head tap)")
    labels: str = _f("fixed", choices=("fixed", "reshuffle", "unique"), doc="random-label mode")
    layout: str = _f("shared", choices=("shared", "per_class"), doc="one head set, or one per class (000)")
    reg: str = _f("log1m", choices=("log1m", "uniform"), doc="L_reg: -log(1-p̂_ŷ) (eq. 4, sign fixed) or CE to uniform")
    chunk: int = _f(0, lo=0, doc="labels per chunk in the fused head (0 = auto by size)")
    lr: float = _f(0.0, lo=0.0, doc="RLP-head learning rate, own param group (0 = optim.lr)")
    weight_decay: float = _f(-1.0, lo=-1.0, doc="RLP-head weight decay, own param group (-1 = optim.weight_decay)")
    eval_samples: int = _f(1024, lo=0, doc="seeded training samples (same every epoch) for rand_acc_eval (0 = off)")
    audit_every: int = _f(0, lo=0, doc="every k epochs train a fresh head on frozen features: rand_acc_audit (0 = off)")
    audit_epochs: int = _f(20, lo=1, doc="training epochs of the audit head (also offline-rlp's default)")
    audit_standardize: bool = _f(False, doc="audit on features scaled to mean row norm √d (matched feature scale)")


@dataclass(frozen=True)
class Optim:
    name: str = _f("sgd", choices=("sgd", "adamw"))
    lr: float = _f(0.1, lo=0.0, lo_open=True)
    momentum: float = _f(0.9, lo=0.0, hi=1.0)
    nesterov: bool = _f(False)
    weight_decay: float = _f(0.0, lo=0.0)
    betas: tuple[float, ...] = _f((0.9, 0.999), doc="AdamW betas")
    warmup_epochs: float = _f(0.0, lo=0.0, doc="linear warm-up length (epochs, fractional allowed)")
    schedule: str = _f("cosine", choices=("cosine", "constant"))
    clip: float = _f(0.0, lo=0.0, doc="max gradient norm (0 = off)")
    label_smoothing: float = _f(0.0, lo=0.0, hi=1.0, doc="class-loss label smoothing")
    class_loss: str = _f("ce", choices=("ce", "mse"), doc="class loss: cross-entropy or MSE on one-hot")


@dataclass(frozen=True)
class Probe:
    class_heads: bool = _f(False, doc="detached per-tap class heads (paper fig. 9)")
    every: int = _f(0, lo=0, doc="run probes every k epochs (0 = never)")
    probes: tuple[str, ...] = _f(("knn",), doc="knn, linear, masc, ncm, invariance")
    layers: tuple[str, ...] = _f(("penultimate",), doc="taps to probe ('all', 'input', tap names)")
    labels: str = _f("clean", choices=("clean", "train"), doc="fit probes on clean or training labels")
    k: int = _f(20, lo=1, doc="k-NN neighbours (003: 20, 004: 5)")
    masc_threshold: float = _f(0.99, lo=0.0, hi=1.0, lo_open=True, doc="MASC explained-variance threshold")
    linear: str = _f("l2", choices=("l2", "adam20"),
                     doc="linear probe: l2 = L-BFGS logistic regression (C = 1, standardized); adam20 = 004's")
    max_train: int = _f(0, lo=0, doc="at most this many train samples feed a probe (0 = all, as 003/004)")


@dataclass(frozen=True)
class Run:
    epochs: int = _f(10, lo=1)
    batch_size: int = _f(128, lo=1, doc="global batch size (split over DDP ranks)")
    eval_batch_size: int = _f(0, lo=0, doc="evaluation batch (0 = 2 × batch_size)")
    seed: int = _f(0, lo=0)
    device: str = _f("auto", doc="auto | cpu | cuda | cuda:N")
    precision: str = _f("fp32", choices=("fp32", "bf16"), doc="bf16 autocast")
    compile: bool = _f(False, doc="torch.compile the model")
    threads: int = _f(0, lo=0, doc="torch CPU threads (0 = leave as is)")
    name: str = _f("", doc="trial id for results (default: output folder name)")
    stop_train_acc: float = _f(0.0, lo=0.0, hi=1.0, doc="stop once train accuracy reaches this (0 = off)")
    keep_checkpoints: str = _f("last", choices=("last", "all"), doc="'all' keeps one per epoch (offline RLP, probes)")


SECTIONS: dict[str, type] = {"data": Data, "model": Model, "rlp": RLP, "optim": Optim, "probe": Probe, "run": Run}


@dataclass(frozen=True)
class Config:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    rlp: RLP = field(default_factory=RLP)
    optim: Optim = field(default_factory=Optim)
    probe: Probe = field(default_factory=Probe)
    run: Run = field(default_factory=Run)

    # ---- flat view: the dotted keys used everywhere -------------------------------------------
    def to_flat(self) -> dict[str, Any]:
        out = {}
        for sec in SECTIONS:
            for f in dataclasses.fields(SECTIONS[sec]):
                v = getattr(getattr(self, sec), f.name)
                out[f"{sec}.{f.name}"] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> "Config":
        nested: dict[str, dict[str, Any]] = {}
        for key, value in flat.items():
            sec, _, name = key.partition(".")
            nested.setdefault(sec, {})[name] = value
        return cls.from_dict(nested)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        parts = {}
        for sec, values in d.items():
            if sec not in SECTIONS:
                raise ConfigError(f"{sec}: unknown config section{_suggest(sec, SECTIONS)}")
            if not isinstance(values, dict):
                raise ConfigError(f"{sec}: expected a table of keys, got {type(values).__name__}")
            kinds = {f.name: f for f in dataclasses.fields(SECTIONS[sec])}
            kw = {}
            for name, value in values.items():
                key = f"{sec}.{name}"
                if name not in kinds:
                    raise ConfigError(f"{key}: unknown config key{_suggest(name, kinds, prefix=sec + '.')}")
                kw[name] = _coerce(key, kinds[name], value)
            parts[sec] = SECTIONS[sec](**kw)
        return cls(**parts)

    def replace(self, **flat_overrides: Any) -> "Config":
        """`cfg.replace(**{"rlp.lam": 10.0})` → a new validated Config."""
        flat = self.to_flat()
        for k, v in flat_overrides.items():
            if k not in flat:
                raise ConfigError(f"{k}: unknown config key{_suggest(k, flat)}")
            flat[k] = v
        return Config.from_flat(flat)

    def __post_init__(self):
        _cross_check(self)


def _suggest(name: str, options, prefix: str = "") -> str:
    close = difflib.get_close_matches(name, list(options), n=3)
    return f" (did you mean {', '.join(prefix + c for c in close)}?)" if close else ""


def field_type(f: dataclasses.Field) -> Any:
    t = f.type
    if isinstance(t, str):
        t = eval(t, {"tuple": tuple, "str": str, "int": int, "float": float, "bool": bool})
    return t


def _coerce(key: str, f: dataclasses.Field, value: Any) -> Any:
    """Check a TOML / flat value against the field's type and range; return the typed value."""
    t = field_type(f)
    meta = f.metadata
    origin = typing.get_origin(t)
    if origin is tuple:
        (elem, _) = typing.get_args(t)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list of {elem.__name__}, got {value!r}")
        return tuple(_scalar(key, elem, v) for v in value)
    v = _scalar(key, t, value)
    if meta.get("choices") and v not in meta["choices"]:
        raise ConfigError(f"{key}: {v!r} is not one of {', '.join(map(repr, meta['choices']))}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and (v < lo or (meta.get("lo_open") and v == lo)):
        raise ConfigError(f"{key}: {v!r} is out of range (must be {'>' if meta.get('lo_open') else '>='} {lo})")
    if hi is not None and v > hi:
        raise ConfigError(f"{key}: {v!r} is out of range (must be <= {hi})")
    return v


def _scalar(key: str, t: type, value: Any) -> Any:
    if t is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if t is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if t is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if t is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {t}")  # pragma: no cover


def _cross_check(cfg: Config) -> None:
    if cfg.rlp.labels == "unique" and cfg.rlp.layout == "per_class":
        raise ConfigError("rlp.layout: 'per_class' cannot be combined with rlp.labels = 'unique'")
    if -1.0 < cfg.rlp.weight_decay < 0.0:
        raise ConfigError(f"rlp.weight_decay: {cfg.rlp.weight_decay!r} is out of range (must be -1 = optim's, or >= 0)")
    if cfg.run.device not in ("auto", "cpu", "cuda") and not cfg.run.device.startswith("cuda:"):
        raise ConfigError(f"run.device: {cfg.run.device!r} is not auto, cpu, cuda or cuda:N")
    betas = cfg.optim.betas
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ConfigError(f"optim.betas: expected two numbers in [0, 1) like [0.9, 0.999], got {list(betas)}")


# ---- text → value (for --set and search spaces) -------------------------------------------------
def parse_value(key: str, text: str) -> Any:
    """Parse the text of `--set key=text` into the type of `key` (validated later by from_flat)."""
    f = _field_for(key)
    t = field_type(f)
    if typing.get_origin(t) is tuple:
        if text.startswith("["):
            return _toml_value(key, text)
        elem = typing.get_args(t)[0]
        return [_parse_text(key, elem, s.strip()) for s in text.split(",") if s.strip()]
    return _parse_text(key, t, text)


def _parse_text(key: str, t: type, text: str) -> Any:
    if t is str:
        return text
    if t is bool:
        low = text.strip().lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {text!r}")
    try:
        num = float(text)
    except ValueError:
        raise ConfigError(f"{key}: expected a {'integer' if t is int else 'number'}, got {text!r}") from None
    if t is int:
        if not num.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {text!r}")
        return int(num)
    return num


def _toml_value(key: str, text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{key}: cannot parse {text!r}: {e}") from None


def _field_for(key: str) -> dataclasses.Field:
    sec, _, name = key.partition(".")
    if sec not in SECTIONS:
        raise ConfigError(f"{key}: unknown config key{_suggest(key, all_keys())}")
    fields = {f.name: f for f in dataclasses.fields(SECTIONS[sec])}
    if name not in fields:
        raise ConfigError(f"{key}: unknown config key{_suggest(key, all_keys())}")
    return fields[name]


def all_keys() -> list[str]:
    return list(Config().to_flat())


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    out = {}
    for item in items or []:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq:
            raise ConfigError(f"{key}: override must look like key=value")
        out[key] = parse_value(key, text.strip())
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder, not a config file")
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start}); TOML files are UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the config file ({e.strerror or type(e).__name__})") from None


def load_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> Config:
    """TOML file (optional) + overrides (`["rlp.lam=1e3"]` or `{"rlp.lam": 1e3}`) → validated Config."""
    base = Config.from_dict(load_toml(path)) if path else Config()
    ov = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    return base.replace(**ov) if ov else base


def to_toml(cfg: Config) -> str:
    """Serialize a Config back to TOML text (round-trips through load_config)."""
    lines = []
    for sec in SECTIONS:
        lines.append(f"[{sec}]")
        for f in dataclasses.fields(SECTIONS[sec]):
            lines.append(f"{f.name} = {_toml_literal(getattr(getattr(cfg, sec), f.name))}")
        lines.append("")
    return "\n".join(lines)


def _toml_literal(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_literal(x) for x in v) + "]"
    raise TypeError(v)  # pragma: no cover


def describe() -> str:
    """All keys with type, default and doc (for `rlp-tune keys`)."""
    rows = []
    for sec, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            d = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            t = field_type(f)
            tn = getattr(t, "__name__", str(t))
            rows.append(f"{sec}.{f.name:<18} {tn:<8} {_toml_literal(d):<22} {f.metadata.get('doc', '')}")
    return "\n".join(rows)

