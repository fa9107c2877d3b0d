"""rlp_tune.run.checks: the network built on the meta device is the real one (so the memory estimate
and the tap checks see what the Trainer builds), for every registered model.

    pytest tests/test_checks.py -q
"""
from __future__ import annotations

import pytest

from rlp_tune.run.checks import _count, meta_network
from rlp_tune.config import Config
from rlp_tune.models import list_models
from rlp_tune.run.train import Trainer


def test_meta_network_counts_what_the_trainer_builds(tiny_cfg):
    cfg = tiny_cfg.replace(**{"rlp.heads": 3, "rlp.hidden": 8, "rlp.layers": ["all"]})
    t = Trainer(cfg)
    model, heads = meta_network(cfg, t.data.in_shape, t.data.num_classes, t.data.m)
    assert _count(model) == _count(t.net.model)
    assert sum(_count(h) for h in heads) == _count(t.net.heads)


# "timm:" is a prefix (any timm model): one of them stands for it
@pytest.mark.parametrize("name", [n if not n.endswith(":") else n + "resnet10t" for n in list_models()])
def test_every_model_builds_on_meta(name):
    over = {"model.name": name, "rlp.layers": ["all"], **({"model.depth": 16} if name == "wrn" else {})}
    shape = (3, 224, 224) if name == "vit_b32" else (3, 32, 32)
    built = meta_network(Config().replace(**over), shape, 10, 100)
    assert built is not None          # None would silently skip the memory and tap checks
    model, heads = built
    assert _count(model) > 0 and len(heads) == len(model.tap_names)
