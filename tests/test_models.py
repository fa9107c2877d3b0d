"""The model contract, checked for every registered model (timm-style parametrized tests).

    .venv/bin/python -m pytest tests/test_models.py -q

Each model is built once (model.dropout = 0.5) at a small input size (CASES) and reused; the big
ones (wrn28_10, vit_b32) run at batch 3 on tiny images so the file stays quick on 2 CPU cores, and
structure-only checks build on the meta device (no memory, no init).
"""
from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from rlp_tune.config import Model
from rlp_tune.models import MODELS, ModelInputError, create_model, list_models

NUM_CLASSES = 7
# name → (in_shape, extra Model fields); unlisted (future) models get DEFAULT_CASE
CASES = {
    "mlp": ((1, 8, 8), {}),
    "wrn": ((3, 8, 8), {"depth": 10, "widen": 1}),
    "wrn16_4": ((3, 8, 8), {}),
    "wrn28_10": ((3, 8, 8), {}),
    "vgg16": ((3, 8, 8), {}),            # 8 px: the last two max-pools are skipped
    "resnet18_cifar": ((3, 8, 8), {}),
    "vit_tiny4": ((3, 16, 16), {}),
    "vit_s4": ((3, 16, 16), {}),
    "vit_b32": ((3, 64, 64), {}),        # 2×2 patches; 224 px is checked once below
    # the generic "timm:<name>" family at two small timm models, a CNN and a ViT (2×2 patches of 16).
    # (Not resnet10t: timm zero-inits each block's last BN, so a fresh one passes no gradient to
    # the block's first conv and the every-parameter-gets-a-gradient check cannot hold.)
    "timm:convnext_atto": ((3, 32, 32), {}),
    "timm:vit_tiny_patch16_224": ((3, 32, 32), {}),
}
DEFAULT_CASE = ((3, 16, 16), {})
TIMM_ANY = ["timm:convnext_atto", "timm:vit_tiny_patch16_224"]
IMAGE_MODELS = ["wrn", "wrn16_4", "wrn28_10", "vgg16", "resnet18_cifar", "vit_tiny4", "vit_s4", "vit_b32",
                "timm:convnext_atto"]
# every registered name; a family key ("timm:") stands for many names and is checked through TIMM_ANY
ALL = [n for n in list_models() if not n.endswith(":")] + TIMM_ANY


def case(name):
    return CASES.get(name, DEFAULT_CASE)


@functools.cache
def built(name: str):
    in_shape, extra = case(name)
    torch.manual_seed(0)
    return create_model(Model(name=name, dropout=0.5, **extra), in_shape, NUM_CLASSES)


@pytest.fixture(scope="module", autouse=True)
def _free_models():
    yield
    built.cache_clear()     # don't hold ~1 GB of models through the rest of the suite


def grad_l1(p):
    """One pass over the gradient: its L1 norm (inf/NaN if any entry is)."""
    return torch.linalg.vector_norm(p.grad, 1)


def batch(name: str, b: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, *case(name)[0], generator=g)


def test_image_families_are_registered():
    assert set(IMAGE_MODELS) <= set(ALL)
    assert "timm:" in list_models() and all(n in MODELS for n in TIMM_ANY) and "timmy:resnet10t" not in MODELS


@pytest.mark.parametrize("name", ALL)
def test_reset_classifier(name):
    in_shape, extra = case(name)
    torch.manual_seed(0)
    model = create_model(Model(name=name, **extra), in_shape, NUM_CLASSES).eval()
    x = batch(name)
    with torch.no_grad():
        _, feats = model(x, taps=("penultimate",))
        model.reset_classifier(4)
        assert isinstance(model.classifier, nn.Linear)
        assert (model.classifier.in_features, model.classifier.out_features) == (model.tap_dims["penultimate"], 4)
        logits4, feats4 = model(x, taps=("penultimate",))
        model.reset_classifier(0)                               # no head: the "logits" are the features
        logits0, _ = model(x)
    assert logits4.shape == (3, 4)
    torch.testing.assert_close(feats4["penultimate"], feats["penultimate"], rtol=0, atol=0)
    torch.testing.assert_close(logits0, feats["penultimate"], rtol=0, atol=0)


@pytest.mark.parametrize("name", ALL)
def test_contract_and_shapes(name):
    model = built(name).eval()
    x = batch(name)
    assert model.tap_names[-1] == "penultimate"
    assert len(set(model.tap_names)) == len(model.tap_names)
    assert set(model.tap_dims) == set(model.tap_names)
    assert set(model.token_taps) <= set(model.tap_names) - {"penultimate"}
    assert isinstance(model.classifier, nn.Linear)
    assert model.classifier.in_features == model.tap_dims["penultimate"]
    assert model.classifier.out_features == NUM_CLASSES
    with torch.no_grad():
        logits, feats = model(x, taps=model.tap_names)
        logits0, none = model(x)
        logits1, one = model(x, taps=("penultimate",))
    assert logits.shape == (3, NUM_CLASSES)
    assert list(feats) == model.tap_names                  # every tap, in depth order
    for t, f in feats.items():
        assert f.shape == (3, model.tap_dims[t]), t
        assert torch.isfinite(f).all(), t
    assert torch.isfinite(logits).all()
    assert none == {} and list(one) == ["penultimate"]
    # asking for taps must not change the computation
    torch.testing.assert_close(logits0, logits, rtol=0, atol=0)
    torch.testing.assert_close(logits1, logits, rtol=0, atol=0)
    torch.testing.assert_close(one["penultimate"], feats["penultimate"], rtol=0, atol=0)


@pytest.mark.parametrize("name", ALL)
def test_every_parameter_gets_a_gradient(name):
    model = built(name).train()
    x = batch(name, seed=2)
    g = torch.Generator().manual_seed(3)
    # loss on the logits alone (no taps requested); random weights so no gradient cancels by symmetry
    model.zero_grad(set_to_none=True)
    logits, _ = model(x)
    (logits * torch.randn(logits.shape, generator=g)).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient from the logits"
        l1 = grad_l1(p)
        assert torch.isfinite(l1), f"{name}: {pname} gradient not finite"
        assert l1 > 0, f"{name}: {pname} gradient is all zero"
    # logits + every tap
    model.zero_grad(set_to_none=True)
    logits, feats = model(x, taps=model.tap_names)
    loss = (logits * torch.randn(logits.shape, generator=g)).sum()
    loss = loss + sum((f * torch.randn(f.shape, generator=g)).sum() for f in feats.values())
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(grad_l1(p)), f"{name}: {pname}"
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_penultimate_is_the_classifier_input(name, mode):
    model = built(name).train(mode == "train")
    torch.manual_seed(4)
    with torch.no_grad():
        logits, feats = model(batch(name), taps=("penultimate",))
        again = model.classifier(feats["penultimate"])
    torch.testing.assert_close(again, logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_dropout_acts_in_train_mode_only(name):
    x = batch(name)
    model = built(name)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    with torch.no_grad():
        model.train()
        a, b = model(x)[0], model(x)[0]
        model.eval()
        c, d = model(x)[0], model(x)[0]
        # with the dropout modules at p = 0, train mode is deterministic: the difference above is theirs
        model.train()
        rates = [m.p for m in drops]
        try:
            for m in drops:
                m.p = 0.0
            e, f = model(x)[0], model(x)[0]
        finally:
            for m, r in zip(drops, rates):
                m.p = r
    assert not torch.allclose(a, b), f"{name}: model.dropout=0.5 changed nothing in train mode"
    torch.testing.assert_close(c, d, rtol=0, atol=0)
    torch.testing.assert_close(e, f, rtol=0, atol=0)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_dropout_config_reaches_the_modules(name, p):
    in_shape, extra = case(name)
    with torch.device("meta"):
        model = create_model(Model(name=name, dropout=p, **extra), in_shape, NUM_CLASSES)
    rates = {m.p for m in model.modules() if isinstance(m, nn.Dropout)}
    assert rates <= {0.0, p} and (p == 0.0 or p in rates), rates


@pytest.mark.parametrize("name", ALL)
def test_channels_last_inputs(name):
    model = built(name).eval()
    x = batch(name)
    with torch.no_grad():
        ref, ref_f = model(x, taps=model.tap_names)
        model.to(memory_format=torch.channels_last)
        try:
            out, out_f = model(x.contiguous(memory_format=torch.channels_last), taps=model.tap_names)
        finally:
            model.to(memory_format=torch.contiguous_format)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    for t in ref_f:
        torch.testing.assert_close(out_f[t], ref_f[t], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_image_models_reject_vectors(name):
    with pytest.raises(ModelInputError, match=f"'{name}'.*image"):
        create_model(Model(name=name, depth=10), (64,), NUM_CLASSES)


# --- family specifics ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, in_shape, num_classes, millions", [
    ("wrn16_4", (3, 32, 32), 10, 2.7),          # Zagoruyko & Komodakis (CIFAR-10 head)
    ("wrn28_10", (3, 32, 32), 10, 36.5),        # Zagoruyko & Komodakis (CIFAR-10 head)
    ("resnet18_cifar", (3, 32, 32), 10, 11.2),  # the common CIFAR ResNet-18 (11,173,962)
    ("vit_b32", (3, 224, 224), 1000, 88.2),     # timm's vit_base_patch32_224
])
def test_parameter_counts_match_the_published_architectures(name, in_shape, num_classes, millions):
    with torch.device("meta"):                  # shapes only: no memory, no init cost
        model = create_model(Model(name=name), in_shape, num_classes)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == millions


def test_wrn_general_depth_and_width():
    model = create_model(Model(name="wrn", depth=22, widen=2), (3, 8, 8), 5)
    assert model.tap_dims == {"stem": 16, "block1": 32, "block2": 64, "block3": 128, "penultimate": 128}
    assert [len(g) for g in model.groups] == [3, 3, 3]          # (22 - 4) / 6 blocks per group
    for depth in (2, 12, 15):
        with pytest.raises(ModelInputError, match=f"model.depth={depth}"):
            create_model(Model(name="wrn", depth=depth), (3, 8, 8), 5)


def test_wrn_block_structure():
    with torch.device("meta"):
        model = create_model(Model(name="wrn16_4", dropout=0.3), (3, 32, 32), 10)
    blk = model.groups[1][0]                                    # first block of group 2: 64 → 128, stride 2
    assert blk.conv1.stride == (2, 2) and blk.shortcut.kernel_size == (1, 1) and blk.shortcut.stride == (2, 2)
    assert blk.drop.p == 0.3
    assert model.groups[1][1].shortcut is None                  # identity shortcut inside a group
    convs = [m.kernel_size for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs.count((3, 3)) == 1 + 6 * 2 and convs.count((1, 1)) == 3   # stem + 6 blocks × 2; 3 projections


@pytest.mark.parametrize("in_shape, pools", [((3, 32, 32), 5), ((3, 8, 8), 3), ((1, 28, 28), 4), ((3, 1, 1), 0)])
def test_vgg_skips_pools_with_nothing_to_halve(in_shape, pools):
    model = create_model(Model(name="vgg16"), in_shape, 10)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == pools
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 13
    logits, feats = model.eval()(torch.randn(2, *in_shape), taps=("block5",))
    assert logits.shape == (2, 10) and feats["block5"].shape == (2, 512)


def _plain_timm(model):
    from timm.models.vision_transformer import VisionTransformer
    plain = VisionTransformer(**model.timm_kwargs, weight_init="skip")  # weights are loaded next
    plain.load_state_dict(model.vit.state_dict())
    return plain


@pytest.mark.parametrize("name", ["vit_tiny4", "vit_s4"])
def test_vit_matches_timm_forward(name):
    model = built(name)
    plain = _plain_timm(model)
    x = batch(name, b=2)
    blocks = {}
    hooks = [blk.register_forward_hook(lambda m, i, o, k=k: blocks.__setitem__(f"block{k + 1}", o[:, 0]))
             for k, blk in enumerate(plain.blocks)]
    try:
        with torch.no_grad():
            for train in (False, True):                         # eval, then train (same dropout RNG order)
                model.train(train), plain.train(train)
                torch.manual_seed(5)
                logits, feats = model(x, taps=model.tap_names)
                torch.manual_seed(5)
                ref = plain(x)
                torch.testing.assert_close(logits, ref, rtol=0, atol=0)
                for t in model.token_taps:                      # the CLS token after each block
                    torch.testing.assert_close(feats[t], blocks[t], rtol=0, atol=0)
            plain.eval(), model.eval()
            pre = plain.forward_head(plain.forward_features(x), pre_logits=True)
            torch.testing.assert_close(model(x, taps=("penultimate",))[1]["penultimate"], pre, rtol=0, atol=0)
    finally:
        for h in hooks:
            h.remove()
    assert model.token_taps == frozenset(f"block{k + 1}" for k in range(len(plain.blocks)))
    assert model.classifier is model.vit.head
    assert not any(k.startswith("classifier.") for k in model.state_dict())   # no duplicated head weights


def test_vit_b32_at_224_matches_timm():
    torch.manual_seed(0)
    model = create_model(Model(name="vit_b32"), (3, 224, 224), 10).eval()
    plain = _plain_timm(model).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        logits, feats = model(x, taps=("block1", "block12", "penultimate"))
        torch.testing.assert_close(logits, plain(x), rtol=0, atol=0)
    assert model.vit.patch_embed.grid_size == (7, 7)
    assert {t: tuple(f.shape) for t, f in feats.items()} == {t: (2, 768) for t in ("block1", "block12", "penultimate")}


def test_vit_errors_and_classifier_swap():
    with pytest.raises(ModelInputError, match="'vit_s4'.*4×4 patches.*30×30"):
        create_model(Model(name="vit_s4"), (3, 30, 30), 10)
    model = create_model(Model(name="vit_tiny4"), (1, 8, 12), 10).eval()  # non-square, 1 channel
    model.reset_classifier(4)
    assert model.vit.head is model.classifier and "classifier" not in dict(model.named_children())
    assert isinstance(model.classifier, nn.Linear) and model.classifier.out_features == 4
    assert model(torch.randn(2, 1, 8, 12))[0].shape == (2, 4)


@pytest.mark.parametrize("name, extra", [("wrn", {"depth": 10, "widen": 1}), ("vit_tiny4", {})])
def test_small_models_fit_a_fixed_batch(name, extra):
    """A few optimizer steps on one batch of random labels cut the loss: the wiring trains end to end."""
    torch.manual_seed(0)
    model = create_model(Model(name=name, **extra), (3, 8, 8), 4).train()
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = nn.functional.cross_entropy(model(x)[0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("name", ["mlp", "resnet18_cifar"])
def test_projector_wraps_any_model(name):
    """003's encoder + MLP projector (model.projector_hidden): new taps, every parameter trained."""
    from rlp_tune.config import Model
    from rlp_tune.models import create_model
    shape = (3, 16, 16)
    m = create_model(Model(name=name, projector_hidden=32, width=48), shape, 7)
    assert m.tap_names[-2:] == ["encoder", "penultimate"] and m.tap_dims["penultimate"] == 32
    x = torch.randn(4, *shape)
    logits, feats = m(x, taps=("encoder", "penultimate"))
    assert logits.shape == (4, 7) and feats["penultimate"].shape == (4, 32)
    torch.testing.assert_close(m.classifier(feats["penultimate"]), logits)
    logits.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


# --- "timm:<name>": any timm architecture -------------------------------------------------------

@pytest.mark.parametrize("name", TIMM_ANY)
def test_timm_any_taps_are_timms_own_features(name):
    """Taps = timm's forward_intermediates maps, pooled; penultimate = the headless timm model's output."""
    import timm
    model = built(name).eval()
    timm_name = name.partition(":")[2]
    kw = {"img_size": case(name)[0][1:]} if "vit" in timm_name else {}
    plain = timm.create_model(timm_name, pretrained=False, num_classes=0, **kw).eval()
    plain.load_state_dict(model.net.state_dict())
    x = batch(name, b=2)
    with torch.no_grad():
        logits, feats = model(x, taps=model.tap_names)
        maps = plain.forward_intermediates(x, intermediates_only=True)
        pre = plain(x)                                          # num_classes=0: the pooled pre-logits
    assert len(maps) == len(model.tap_names) - 1
    for t, m in zip(model.tap_names, maps):
        torch.testing.assert_close(feats[t], m.mean((2, 3)), rtol=0, atol=0)
    torch.testing.assert_close(feats["penultimate"], pre, rtol=0, atol=0)
    torch.testing.assert_close(logits, model.classifier(pre), rtol=0, atol=0)
    is_vit = "vit" in timm_name
    assert model.token_taps == (frozenset(model.tap_names[:-1]) if is_vit else frozenset())


def test_timm_any_names_and_errors():
    model = built("timm:convnext_atto")
    assert model.tap_names == ["stages_0", "stages_1", "stages_2", "stages_3", "penultimate"]
    assert model.tap_dims == {"stages_0": 40, "stages_1": 80, "stages_2": 160, "stages_3": 320, "penultimate": 320}
    vit = built("timm:vit_tiny_patch16_224")
    assert vit.tap_names == [f"blocks_{i}" for i in range(12)] + ["penultimate"]
    assert vit.net.patch_embed.grid_size == (2, 2)              # img_size taken from the input shape
    with pytest.raises(ModelInputError, match="timm has no model 'convnext_ato'; did you mean timm:convnext_atto"):
        create_model(Model(name="timm:convnext_ato"), (3, 16, 16), 5)
    with pytest.raises(ModelInputError, match="'timm:convnext_atto'.*image"):
        create_model(Model(name="timm:convnext_atto"), (64,), 5)
    # too small for its downsampling: refused when built, not in the first training step
    with pytest.raises(ModelInputError, match="'timm:convnext_atto' cannot take input 1×8×8 .*data.image_size"):
        create_model(Model(name="timm:convnext_atto"), (1, 8, 8), 5)
