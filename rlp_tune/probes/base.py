"""The probe registry: one entry per probe, registered by the probe's own file.

    @register_probe("ncm")                                    # rlp_tune/probes/ncm.py
    def ncm_probe(train_feats, train_labels, test_feats, test_labels, num_classes, seed): ...

    @register_probe("knn", options={"k": "k"})                # keyword k ← config key probe.k
    def knn_probe(train_feats, train_labels, test_feats, test_labels, num_classes, seed, k): ...

A feature probe is a pure function of one layer's features: (train (N, d), train labels (N,),
test (M, d), test labels (M,), num_classes, seed, **options) → test accuracy in [0, 1].
`options` maps each of its keywords to the `[probe]` config field it comes from; those values name
the rows' protocol ("labels=clean;k=20", `ProbeSpec.protocol`), so a probe's settings and its
protocol are stated once, here. `features=False` marks a probe that is not a function of features
(invariance: it needs the model and the augmentation; probes/layers.py runs it).

Adding a probe: one file that registers it, and its import in probes/__init__.py. `probe.probes`
accepts every registered name (`list_probes()`); tests/test_probe_registry.py checks every entry.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..registry import Registry


@dataclass(frozen=True)
class ProbeSpec:
    name: str
    fn: Callable[..., float]
    options: dict[str, str] = field(default_factory=dict)    # fn keyword → [probe] field (its value names the protocol)
    features: bool = True                                    # False: not a feature probe (invariance)

    def kwargs(self, probe_cfg) -> dict:
        """The keyword arguments this probe takes from a `[probe]` config section."""
        return {kw: getattr(probe_cfg, f) for kw, f in self.options.items()}

    def protocol(self, labels: str, probe_cfg, n_subset: int = 0) -> str:
        """Its rows' protocol: the label set, each option's value, and max_train when a subset was fitted."""
        parts = [f"labels={labels}"]
        parts += [f"{kw}={v:g}" if isinstance(v, float) else f"{kw}={v}" for kw, v in self.kwargs(probe_cfg).items()]
        if n_subset:
            parts.append(f"max_train={n_subset}")
        return ";".join(parts)


PROBES = Registry("probe")
list_probes = PROBES.list


def register_probe(name: str, options: dict[str, str] | None = None, features: bool = True) -> Callable:
    """Decorator: register `fn` as the probe `name` (module doc)."""
    def deco(fn):
        PROBES.add(name, ProbeSpec(name, fn, dict(options or {}), features))
        return fn
    return deco


def probe_spec(name: str) -> ProbeSpec:
    """The registered probe `name`; an unknown name is a one-line RegistryError listing close ones."""
    return PROBES.get(name)
