"""One typed, frozen config object that flows from TOML / `--set` to every worker.

    cfg = load_config("configs/digits_mlp.toml", overrides=["rlp.lam=1e3", "rlp.layers=penultimate,block2"])
    flat = cfg.to_flat()            # {"rlp.lam": 1000.0, ...}: the same dotted keys as TOML, search spaces, Parquet
    cfg2 = Config.from_flat(flat)   # round-trips exactly

Every key is validated before any work starts: an unknown key, a wrong type or an out-of-range
value raises `ConfigError` whose one-line message names the dotted key.

Length (~450 lines, over the house's ~400): every section's fields sit with their descriptions,
allowed values and checks, so `rlp-tune keys`, TOML, `--set` and the one-line errors have one source.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError
from .names import NAME_RULE, name_problem
from .tomlfile import TomlError, read_toml


# the dotted keys code names by hand (analysis columns, design factors, checks): each spelled once here
LAM_KEY = "rlp.lam"                 # the RLP λ (`lam` names only it; mixup's weight comes from data.mixup_alpha)
N_KEY = "rlp.n"
NOISE_KEY = "data.label_noise"


class ConfigError(UserError, ValueError):
    """A bad config value. `str(err)` is one line that names the dotted key."""


# keys that were renamed: an old one is refused with one line naming its new name
RENAMED = {"data.mixup": "data.mixup_alpha"}


def unknown_key(key: str, options, name: str | None = None, prefix: str = "") -> ConfigError:
    """The one-line error of a key that is not a config key: its new name if renamed, else close matches."""
    if key in RENAMED:
        return ConfigError(f"{key}: renamed to {RENAMED[key]}")
    return ConfigError(f"{key}: unknown config key{_suggest(name or key, options, prefix=prefix)}")


def setting(default, *, choices=None, lo=None, hi=None, lo_open=False, doc="", allowed=""):
    """A config key: its default, the accepted values (choices or [lo, hi]) and its `rlp-tune keys` text."""
    # allowed: the accepted values in words where neither choices nor a range says it (`rlp-tune keys`)
    meta = {"choices": choices, "lo": lo, "hi": hi, "lo_open": lo_open, "doc": doc, "allowed": allowed}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda d=tuple(default): d, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Data:
    name: str = setting("digits", doc="registered dataset (rlp_tune.data.list_datasets())", allowed="registered:data")
    root: str = setting("", doc="folder holding the dataset files; never downloaded", allowed="a folder")
    label_noise: float = setting(0.0, lo=0.0, hi=1.0, doc="p: each train label replaced by a uniform class w.p. p")
    fraction: float = setting(1.0, lo=0.0, hi=1.0, lo_open=True, doc="seeded stratified subset of the train set")
    val_fraction: float = setting(0.0, lo=0.0, hi=0.5, doc="stratified validation split held out of train")
    augment: str = setting("none", choices=("none", "flip", "crop_flip", "crop", "benign", "randaugment"),
                      doc="batched on-device augmentation (benign = 003's suite)")
    augment_strength: float = setting(0.5, lo=0.0, hi=1.0, doc="RandAugment-style magnitude (augment = randaugment)")
    augment_sets: int = setting(0, lo=0, doc="B fixed augmentations per sample, drawn once (0 = fresh every step)")
    augment_labels: str = setting("shared", choices=("shared", "independent"),
                             doc="with augment_sets: views share the sample's label, or noisy samples get one per view")
    mixup_alpha: float = setting(0.0, lo=0.0, doc="mixup: the mixing weight is drawn from Beta(α, α), on the class loss "
                                 "(0 = off)")
    random_classes: int = setting(0, lo=0, doc="label noise draws from this many classes (0 = the dataset's)")
    seed: int = setting(-1, lo=-1, doc="data seed (noise, fraction, val split); -1 = run.seed")
    synthetic_size: int = setting(512, lo=8, doc="train samples of the `synthetic` dataset")
    image_size: int = setting(0, lo=0, doc="resize images to this (0 = native); streamed folders need it")
    workers: int = setting(4, lo=0, doc="DataLoader workers for streamed (image-folder) datasets")


@dataclass(frozen=True)
class Model:
    name: str = setting("mlp", doc="registered model (rlp_tune.models.list_models())", allowed="registered:model")
    dropout: float = setting(0.0, lo=0.0, hi=1.0, doc="dropout probability (model-specific placement)")
    width: int = setting(256, lo=1, doc="mlp hidden width")
    depth: int = setting(2, lo=1, doc="mlp hidden layers; wrn depth for model.name = 'wrn'")
    widen: int = setting(4, lo=1, doc="wrn widening factor for model.name = 'wrn'")
    projector_hidden: int = setting(0, lo=0, doc="MLP projector hidden width before the classifier (0 = none)")
    channels_last: bool = setting(False, doc="channels_last memory format (pays on GPUs)")


@dataclass(frozen=True)
class RLP:
    lam: float = setting(0.0, lo=0.0, doc="λ: strength of L_reg on the feature extractor")
    heads: int = setting(1, lo=0, doc="parallel heads per tap, each with its own random-label table (0 = no RLP)")
    hidden: int = setting(0, lo=0, doc="hidden width of the head (0 = linear)")
    n: int = setting(10, lo=2, doc="number of random labels (clipped to m for labels='unique')")
    layers: tuple[str, ...] = setting(("penultimate",), doc="taps with RLP heads, or 'all'",
                                 allowed="all | tap names of the model")
    regularize: tuple[str, ...] = setting(("penultimate",), doc="taps whose L_reg is applied ('all' = every head tap)",
                                     allowed="all | taps in rlp.layers")
    labels: str = setting("fixed", choices=("fixed", "reshuffle", "unique"), doc="random-label mode")
    layout: str = setting("shared", choices=("shared", "per_class"), doc="one head set, or one per class (000)")
    reg: str = setting("log1m", choices=("log1m", "uniform"), doc="L_reg: -log(1-p̂_ŷ) (eq. 4, sign fixed) or CE to uniform")
    chunk: int = setting(0, lo=0, doc="labels per chunk in the fused head (0 = auto by size)")
    lr: float = setting(0.0, lo=0.0, doc="RLP-head learning rate, own param group (0 = optim.lr)")
    weight_decay: float = setting(-1.0, lo=-1.0, doc="RLP-head weight decay, own param group (-1 = optim.weight_decay)")
    eval_samples: int = setting(1024, lo=0, doc="seeded training samples (same every epoch) for rand_acc_eval (0 = off)")
    audit_every: int = setting(0, lo=0, doc="every k epochs train a fresh head on frozen features: rand_acc_audit (0 = off)")
    audit_epochs: int = setting(20, lo=1, doc="training epochs of the audit head (also offline-rlp's default)")
    audit_standardize: bool = setting(False, doc="audit on features scaled to mean row norm √d (matched feature scale)")


@dataclass(frozen=True)
class Optim:
    name: str = setting("sgd", choices=("sgd", "adamw"), doc="optimizer")
    lr: float = setting(0.1, lo=0.0, lo_open=True, doc="peak learning rate (after warm-up)")
    momentum: float = setting(0.9, lo=0.0, hi=1.0, doc="SGD momentum")
    nesterov: bool = setting(False, doc="Nesterov momentum (SGD, momentum > 0)")
    weight_decay: float = setting(0.0, lo=0.0, doc="L2 weight decay (decoupled for adamw)")
    betas: tuple[float, ...] = setting((0.9, 0.999), doc="AdamW betas", allowed="two numbers in [0, 1)")
    warmup_epochs: float = setting(0.0, lo=0.0, doc="linear warm-up length (epochs, fractional allowed)")
    schedule: str = setting("cosine", choices=("cosine", "constant"),
                       doc="per-step LR after warm-up: cosine to 0 or constant")
    clip: float = setting(0.0, lo=0.0, doc="max gradient norm (0 = off)")
    label_smoothing: float = setting(0.0, lo=0.0, hi=1.0, doc="class-loss label smoothing")
    class_loss: str = setting("ce", choices=("ce", "mse"), doc="class loss: cross-entropy or MSE on one-hot")


@dataclass(frozen=True)
class Probe:
    class_heads: bool = setting(False, doc="detached per-tap class heads (paper fig. 9)")
    every: int = setting(0, lo=0, doc="run probes every k epochs (0 = never)")
    probes: tuple[str, ...] = setting(("knn",), doc="registered probes (rlp_tune.probes.list_probes()) run every "
                                 "probe.every epochs", allowed="registered:probe")
    layers: tuple[str, ...] = setting(("penultimate",), doc="taps to probe ('all', 'input', tap names)",
                                 allowed="all | input | tap names")
    labels: str = setting("clean", choices=("clean", "train"), doc="fit probes on clean or training labels")
    k: int = setting(20, lo=1, doc="k-NN neighbours (003: 20, 004: 5)")
    masc_threshold: float = setting(0.99, lo=0.0, hi=1.0, lo_open=True, doc="MASC explained-variance threshold")
    linear: str = setting("l2", choices=("l2", "adam20"),
                     doc="linear probe: l2 = L-BFGS logistic regression (C = 1, standardized); adam20 = 004's")
    max_train: int = setting(0, lo=0, doc="at most this many train samples feed a probe (0 = all, as 003/004)")


@dataclass(frozen=True)
class Run:
    epochs: int = setting(10, lo=1, doc="training epochs (the LR schedule spans them)")
    batch_size: int = setting(128, lo=1, doc="global batch size (split over DDP ranks)")
    eval_batch_size: int = setting(0, lo=0, doc="evaluation batch (0 = 2 × batch_size)")
    seed: int = setting(0, lo=0, doc="seed of init, data order, augmentation and random labels")
    device: str = setting("auto", doc="training device", allowed="auto | cpu | cuda | cuda:N")
    precision: str = setting("fp32", choices=("fp32", "bf16"), doc="bf16 autocast")
    compile: bool = setting(False, doc="torch.compile the model")
    threads: int = setting(0, lo=0, doc="torch CPU threads (0 = auto: usable cores less busy ones; sweeps: the trial's CPUs)")
    name: str = setting("", doc="trial id for results (default: output folder name)",
                        allowed="one folder name (no / \\, not starting with . or -)")
    stop_train_acc: float = setting(0.0, lo=0.0, hi=1.0, doc="stop once train accuracy reaches this (0 = off)")
    keep_checkpoints: str = setting("last", choices=("last", "all"), doc="'all' keeps one per epoch (offline RLP, probes)")


TRACKERS = ("tensorboard", "wandb", "mlflow")


@dataclass(frozen=True)
class Logging:
    """Experiment trackers (rlp_tune/run/trackers.py); none of these keys changes the training."""
    trackers: tuple[str, ...] = setting((), choices=TRACKERS, doc="send each epoch's metrics to these (--log)")
    project: str = setting("rlp_tune", doc="W&B project / MLflow experiment name", allowed="any text")
    dir: str = setting("", doc="tracker files (TensorBoard events, W&B offline runs) ('' = OUT/tracking)",
                  allowed="a folder")
    mlflow_uri: str = setting("", doc="MLflow tracking URI ('' = SQLite file logging.dir/mlflow.db)",
                         allowed="sqlite:///path | http(s)://host | file:/path")
    wandb_mode: str = setting("auto", choices=("auto", "online", "offline"),
                         doc="W&B mode (auto = env WANDB_MODE, else W&B's default)")


SECTIONS: dict[str, type] = {"data": Data, "model": Model, "rlp": RLP, "optim": Optim, "probe": Probe, "run": Run,
                             "logging": Logging}
# a table of metadata that `rlp-tune train` writes into OUT/config.toml; not a config section
PROVENANCE_TABLE = "provenance"


@dataclass(frozen=True)
class Config:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    rlp: RLP = field(default_factory=RLP)
    optim: Optim = field(default_factory=Optim)
    probe: Probe = field(default_factory=Probe)
    run: Run = field(default_factory=Run)
    logging: Logging = field(default_factory=Logging)

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
            if sec == PROVENANCE_TABLE:     # written beside the config (config.toml), not read back
                continue
            if sec not in SECTIONS:
                raise ConfigError(f"{sec}: unknown config section{_suggest(sec, SECTIONS)}")
            if not isinstance(values, dict):
                raise ConfigError(f"{sec}: expected a table of keys, got {type(values).__name__}")
            kinds = {f.name: f for f in dataclasses.fields(SECTIONS[sec])}
            kw = {}
            for name, value in values.items():
                key = f"{sec}.{name}"
                if name not in kinds:
                    raise unknown_key(key, kinds, name, prefix=sec + ".")
                kw[name] = _coerce(key, kinds[name], value)
            parts[sec] = SECTIONS[sec](**kw)
        return cls(**parts)

    def replace(self, **flat_overrides: Any) -> "Config":
        """`cfg.replace(**{"rlp.lam": 10.0})` → a new validated Config."""
        flat = self.to_flat()
        for k, v in flat_overrides.items():
            if k not in flat:
                raise unknown_key(k, flat)
            flat[k] = v
        return Config.from_flat(flat)

    def __post_init__(self):
        _cross_check(self)


def _suggest(name: str, options, prefix: str = "") -> str:
    close = difflib.get_close_matches(name, list(options), n=3)
    return f" (did you mean {', '.join(prefix + c for c in close)}?)" if close else ""


def field_type(f: dataclasses.Field) -> Any:
    """The resolved type of a section field (`f.type` is a string under `from __future__ import annotations`)."""
    return _field_types()[f]


@functools.cache
def _field_types() -> dict[dataclasses.Field, Any]:
    # dataclasses.Field hashes by identity; typing.get_type_hints resolves each section's annotations once
    return {f: typing.get_type_hints(cls)[f.name] for cls in SECTIONS.values() for f in dataclasses.fields(cls)}


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
        items = tuple(_scalar(key, elem, v) for v in value)
        bad = [v for v in items if meta.get("choices") and v not in meta["choices"]]
        if bad:
            raise ConfigError(f"{key}: {bad[0]!r} is not one of {', '.join(map(repr, meta['choices']))}")
        return items
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
    if cfg.run.name and name_problem(cfg.run.name):   # it names the trial's files: one folder name
        raise ConfigError(f"run.name: {cfg.run.name!r} {name_problem(cfg.run.name)}; {NAME_RULE}")
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
        raise ConfigError(f"{key}: expected {'an integer' if t is int else 'a number'}, got {text!r}") from None
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
        raise unknown_key(key, all_keys())
    fields = {f.name: f for f in dataclasses.fields(SECTIONS[sec])}
    if name not in fields:
        raise unknown_key(key, all_keys())
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
    """A TOML file as a dict (tomlfile.read_toml: bounded before parsing); any problem is a one-line
    ConfigError naming the file."""
    try:
        return read_toml(path)
    except TomlError as e:
        raise ConfigError(str(e)) from None


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
            lines.append(f"{f.name} = {toml_literal(getattr(getattr(cfg, sec), f.name))}")
        lines.append("")
    return "\n".join(lines)


def toml_literal(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_literal(x) for x in v) + "]"
    raise TypeError(v)  # pragma: no cover


# a key whose values are a registry's names (checked where the registry is loaded: data, model, probe)
REGISTERED = {"registered:data": (".data", "list_datasets"), "registered:model": (".models", "list_models"),
              "registered:probe": (".probes", "list_probes")}


def allowed(f: dataclasses.Field) -> str:
    """The values a key accepts, in words: 'fixed | reshuffle | unique', '[0, 1]', '> 0', 'true | false'."""
    meta, t = f.metadata, field_type(f)
    if meta.get("allowed", "") in REGISTERED:   # the registry's names (imports the package)
        module, fn = REGISTERED[meta["allowed"]]
        names = getattr(importlib.import_module(module, __package__), fn)
        return " | ".join(n + "<timm name>" if n.endswith(":") else n for n in names())   # "timm:" = a family
    if meta.get("allowed"):
        return meta["allowed"]
    if meta.get("choices"):
        text = " | ".join(map(str, meta["choices"]))
        return f"list of {text}" if typing.get_origin(t) is tuple else text
    if t is bool:
        return "true | false"
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and hi is not None:
        return f"{'(' if meta.get('lo_open') else '['}{lo:g}, {hi:g}]"
    if lo is not None:
        return f"{'>' if meta.get('lo_open') else '>='} {lo:g}"
    if typing.get_origin(t) is tuple:
        return f"list of {typing.get_args(t)[0].__name__}"
    return "any " + t.__name__


def describe() -> str:
    """All keys with type, default, allowed values and description (for `rlp-tune keys`)."""
    rows = [f"{'key':<24} {'type':<6} {'default':<16} description; allowed values"]
    for sec, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            d = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            t = field_type(f)
            tn = "list" if typing.get_origin(t) is tuple else getattr(t, "__name__", str(t))
            rows.append(f"{sec + '.' + f.name:<24} {tn:<6} {toml_literal(d):<16} {f.metadata.get('doc', '')}; "
                        f"{allowed(f)}")
    return "\n".join(rows)

