"""Checks of a run's settings against its data and device, before any network is built or trained.

    check_run(cfg, data, device)    # ConfigError (one line naming the key) or nothing

Called by the Trainer once the dataset is loaded (the sizes below depend on it): the validation
split is not empty, the k-NN probe has k neighbours to find, the probe names and probed taps exist,
and the network fits in memory. The memory figure is an estimate from the parameter count (network and RLP heads
built on the `meta` device: no memory is touched): parameters + gradients + optimizer state +
random-label tables. Activations come on top, so it is a lower bound: a run it refuses cannot fit.
"""
from __future__ import annotations

import os

import torch

from ..config import N_KEY, Config, ConfigError

GIB = 2 ** 30


def check_run(cfg: Config, data, device: torch.device | None) -> None:
    """device None: leave out the memory check (a sweep's driver may not hold the trials' device)."""
    if cfg.data.val_fraction > 0 and len(data.y.get("val", ())) == 0:
        raise ConfigError(f"data.val_fraction: {cfg.data.val_fraction:g} of {data.m} training samples gives 0 "
                          "validation samples (each class keeps round(fraction · its count)); raise it or set 0")
    _check_probes(cfg, data.m)
    built = meta_network(cfg, data.in_shape, data.num_classes, data.m)   # rlp.layers checked here
    if built is None:   # a model that cannot be built on the meta device: the real build will tell
        return
    model, heads = built
    if cfg.probe.every:
        from ..probes.layers import probe_taps
        probe_taps(model, cfg.probe.layers)
    if device is not None:
        _check_memory(cfg, data, device, _count(model), sum(_count(h) for h in heads))


def check_probe_names(names, key: str = "probe.probes") -> None:
    """Every name is a registered probe (rlp_tune.probes.list_probes())."""
    from ..probes import list_probes
    known = list_probes()
    bad = [p for p in names if p not in known]
    if bad:
        raise ConfigError(f"{key}: unknown probe {bad[0]!r} (known: {', '.join(known)})")


def _check_probes(cfg: Config, m: int) -> None:
    check_probe_names(cfg.probe.probes)
    from ..probes import probe_spec
    n_fit = min(m, cfg.probe.max_train or m)     # probe.max_train = 0: all training samples
    takes_k = any("k" in probe_spec(n).options.values() for n in cfg.probe.probes)   # a neighbour count
    if cfg.probe.every and takes_k and cfg.probe.k > n_fit:
        raise ConfigError(f"probe.k: {cfg.probe.k} neighbours, but the probes fit on {n_fit} training samples "
                          f"(the train split, at most probe.max_train)")


def meta_network(cfg: Config, in_shape, num_classes: int, m: int):
    """(model, [RLP heads per tap]) built on the meta device: shapes and counts, no memory. Sizes
    that overflow torch's size arithmetic are a ConfigError; None if the model does something at
    construction that the meta device cannot (then the real build is the check)."""
    from ..heads import RLPHeads
    from ..models import create_model, resolve_taps
    mc, r = cfg.model, cfg.rlp
    with torch.device("meta"):
        try:
            model = create_model(mc, in_shape, num_classes)
        except (RuntimeError, OverflowError, NotImplementedError) as e:
            if not _overflow(e):
                return None
            raise ConfigError(f"model.width: {mc.name} with width {mc.width}, depth {mc.depth}, widen {mc.widen} "
                              f"cannot be built ({_first_line(e)})") from None
        taps = resolve_taps(model, r.layers) if r.heads > 0 else []
        n = m if r.labels == "unique" else r.n
        try:
            heads = [RLPHeads(model.tap_dims[t], n, r.heads, r.hidden, norm=t in model.token_taps, layout=r.layout,
                              num_classes=num_classes, reg=r.reg, chunk=r.chunk) for t in taps]
        except (RuntimeError, OverflowError) as e:
            if not _overflow(e):
                return None
            raise ConfigError(f"rlp.n: heads with n {n}, {r.heads} heads, hidden {r.hidden} cannot be built "
                              f"({_first_line(e)})") from None
    return model, heads


def _overflow(e: Exception) -> bool:
    return isinstance(e, OverflowError) or "overflow" in str(e).lower()


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def available_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return None


def _check_memory(cfg: Config, data, device: torch.device, p_model: int, p_heads: int) -> None:
    states = {"adamw": 2}.get(cfg.optim.name, 1 if cfg.optim.momentum > 0 else 0)
    tables = data.m * cfg.rlp.heads * 8 * max(1, len(cfg.rlp.layers)) if cfg.rlp.heads else 0
    need = 4 * (p_model + p_heads) * (2 + states) + tables
    avail = available_bytes(device)
    if avail is None or need <= avail:
        return
    key = N_KEY if p_heads > p_model else "model.width"
    raise ConfigError(f"{key}: the network needs at least {need / GIB:.1f} GiB for parameters, gradients and "
                      f"optimizer state ({p_model / 1e6:.3g}M model + {p_heads / 1e6:.3g}M RLP-head parameters); "
                      f"{avail / GIB:.1f} GiB is available on {device}")


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__
