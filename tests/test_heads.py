"""Tests for rlp_tune/heads.py: the fused, routed RLP head losses against a two-pass autograd
reference (float64), numerical stability, gradient routing, the sign of L_reg, chunking.

    .venv/bin/python -m pytest tests/test_heads.py -q
"""
from __future__ import annotations

import pytest
import torch

from rlp_tune.heads import (DENSE_BYTES, RLPHeads, head_logits, plan_chunk, reference_losses,
                            rlp_head_losses)

LAM = 3.7


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # every tensor here is tiny: thread hand-offs would cost more than they save on a busy box
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _setup(B=29, d=8, n=50, heads=1, hidden=0, norm=False, layout="shared", num_classes=1,
           reg="log1m", chunk=0, scale=4.0, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    m = RLPHeads(d, n, heads=heads, hidden=hidden, norm=norm, layout=layout,
                 num_classes=num_classes, reg=reg, chunk=chunk).to(dtype)
    with torch.no_grad():                     # spread logits out so softmaxes are far from uniform
        m.weight.mul_(scale)
        if norm:                              # non-trivial affine so its routing is exercised
            m.norm.weight.uniform_(0.5, 1.5)
            m.norm.bias.uniform_(-0.3, 0.3)
    z = torch.randn(B, d, dtype=dtype, requires_grad=True)
    y = torch.randint(0, n, (B, heads))
    yc = torch.randint(0, num_classes, (B,))
    with torch.no_grad():                     # a third of the samples get their argmax as label
        y[: B // 3] = head_logits(m, z, yc).argmax(-1)[: B // 3]
    return m, z, y, yc


def _grads(loss, tensors):
    gs = torch.autograd.grad(loss, tensors, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(gs, tensors)]


def _rel(a, b):
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


CASES = {
    "linear-dense": dict(),
    "linear-chunked": dict(chunk=7),                      # 50 labels = 7·7 + 1: ragged last chunk
    "multihead-chunked": dict(heads=3, chunk=16),
    "multihead-dense": dict(heads=4),
    "hidden": dict(heads=2, hidden=6),
    "hidden-chunked": dict(heads=2, hidden=6, chunk=9),
    "norm": dict(norm=True),
    "norm-hidden-chunked": dict(heads=3, hidden=5, norm=True, chunk=11),
    "uniform-dense": dict(reg="uniform", heads=2),
    "uniform-chunked": dict(reg="uniform", heads=2, chunk=9),
    "per_class": dict(layout="per_class", num_classes=4, n=10, heads=2),
    "per_class-hidden-norm-uniform-chunked": dict(layout="per_class", num_classes=3, n=10, heads=2,
                                                  hidden=5, norm=True, reg="uniform", chunk=3),
}


@pytest.mark.parametrize("case", list(CASES))
def test_one_pass_equals_two_pass_reference(case):
    m, z, y, yc = _setup(**CASES[case])
    params = [p for _, p in m.named_parameters()]
    out = m(z, y, yc)
    r_rnd, r_reg, r_cor = reference_losses(m, z, y, yc)
    # loss values and accuracy counts
    assert _rel(out.loss_rnd_heads, r_rnd) < 1e-10
    assert _rel(out.loss_reg_heads, r_reg) < 1e-10
    assert torch.equal(out.correct, r_cor)
    assert out.loss_rnd.item() == pytest.approx(r_rnd.sum().item(), rel=1e-12)
    assert out.loss_reg.item() == pytest.approx(r_reg.mean().item(), rel=1e-12)
    assert 0 < int(r_cor.sum()) < z.shape[0] * m.heads      # a count that can be wrong either way
    # each loss separately, and the combined objective, for z and every parameter
    for fused, ref in ((out.loss_rnd, r_rnd.sum()), (out.loss_reg, r_reg.mean()),
                       (out.loss_rnd + LAM * out.loss_reg, r_rnd.sum() + LAM * r_reg.mean())):
        gf, gr = _grads(fused, [z] + params), _grads(ref, [z] + params)
        for (name, g1, g2) in zip(["z"] + [k for k, _ in m.named_parameters()], gf, gr):
            if g2.abs().max() == 0:
                assert g1.abs().max() == 0, name
            else:
                assert _rel(g1, g2) < 1e-6, (case, name, _rel(g1, g2))
    # the combined objective reaches both sides
    g_all = _grads(out.loss_rnd + LAM * out.loss_reg, [z] + params)
    assert all(g.abs().max() > 0 for g in g_all)


def test_reference_matches_naive_probability_formula():
    # independent check of the stable formulas at moderate logits: -log(1 - p_t) and -log p_t
    m, z, y, _ = _setup(heads=2, scale=2.0)
    out = m(z, y)
    p = torch.softmax(head_logits(m, z), -1)                           # (B, h, n)
    pt = p.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    assert _rel(out.loss_reg_heads, (-torch.log1p(-pt)).mean(0)) < 1e-9
    assert _rel(out.loss_rnd_heads, (-torch.log(pt)).mean(0)) < 1e-9
    u = RLPHeads(8, 50, heads=2, reg="uniform").double()
    u.load_state_dict(m.state_dict())
    out_u = u(z, y)
    ce_uniform = -(torch.log(p)).mean(-1).mean(0)                      # CE(1/n, p̂)
    assert _rel(out_u.loss_reg_heads, ce_uniform) < 1e-9


@pytest.mark.parametrize("reg", ["log1m", "uniform"])
@pytest.mark.parametrize("chunk", [0, 13])
def test_finite_for_huge_logits(reg, chunk):
    m, z, y, _ = _setup(n=40, heads=2, reg=reg, chunk=chunk, scale=1.0, dtype=torch.float32)
    with torch.no_grad():
        m.weight.mul_(1e4 / head_logits(m, z).abs().max())              # logits of magnitude ~1e4
        # make head 0 predict its targets with certainty (p_t == 1 in fp32 → the naive log(1 - p) = -inf)
        m.weight[0].zero_()
        m.bias.zero_()
        m.bias[0, 0] = 1e4
    y[:, 0] = 0
    assert head_logits(m, z).abs().max() >= 9e3
    out = m(z, y)
    assert torch.isfinite(out.loss_rnd_heads).all() and torch.isfinite(out.loss_reg_heads).all()
    if reg == "log1m":
        assert out.loss_reg_heads[0].item() == pytest.approx(1e4, rel=1e-3)   # ≈ s_t - max_{j≠t} s_j
        assert int(out.correct[0]) == z.shape[0]
    (out.loss_rnd + LAM * out.loss_reg).backward()
    for t in [z] + list(m.parameters()):
        assert t.grad is not None and torch.isfinite(t.grad).all()
    assert z.grad.abs().max() > 0


def test_routing():
    m, z, y, _ = _setup(heads=2, hidden=6, norm=True, chunk=9)
    out = m(z, y)
    out.loss_rnd.backward(retain_graph=True)
    assert z.grad is None                     # L_rnd: head only (the feature branch is skipped)
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in m.parameters())
    m.zero_grad(set_to_none=True)
    z.grad = None
    out.loss_reg.backward()
    assert z.grad is not None and z.grad.abs().max() > 0              # L_reg: features only
    assert all(p.grad is None for p in m.parameters())   # no dW work at all for L_reg alone


def test_regularize_false_reports_but_does_not_push():
    m, z, y, _ = _setup(heads=2)
    on, off = m(z, y), m(z, y, regularize=False)
    assert torch.allclose(on.loss_reg, off.loss_reg)
    assert not off.loss_reg.requires_grad
    off.loss_rnd.backward()
    assert z.grad is None
    assert m.weight.grad.abs().max() > 0


def _p_target(m, z, y):
    return torch.softmax(head_logits(m, z), -1).gather(-1, y.unsqueeze(-1)).mean().item()


@pytest.mark.parametrize("reg", ["log1m", "uniform"])
def test_sign_reg_lowers_and_rnd_raises_target_probability(reg):
    m, z0, y, _ = _setup(n=20, heads=1, reg=reg, scale=1.0)
    z = z0.detach().clone().requires_grad_()
    with torch.no_grad():                      # start with p̂_target well above chance (1/n)
        m.weight[0, y[:, 0]] += 0.5 * z
    p0 = _p_target(m, z, y)
    assert p0 > 3.0 / 20
    # minimizing λ·L_reg over z, W fixed, lowers p̂_target
    opt = torch.optim.SGD([z], lr=3.0)
    for _ in range(20):
        opt.zero_grad()
        (LAM * m(z, y).loss_reg).backward()
        opt.step()
    assert m.weight.grad is None
    p_reg = _p_target(m, z, y)
    assert p_reg < 0.5 * p0
    # minimizing L_rnd over the head, z fixed, raises it
    opt = torch.optim.SGD(m.parameters(), lr=3.0)
    for _ in range(20):
        opt.zero_grad()
        m(z, y).loss_rnd.backward()
        opt.step()
    assert _p_target(m, z, y) > 1.5 * p_reg


def test_lambda_lowers_random_label_accuracy_in_training():
    # a tiny feature extractor + head trained jointly: larger λ → lower random-label accuracy
    def train(lam):
        torch.manual_seed(1)
        X = torch.randn(128, 16)
        y = torch.randint(0, 8, (128, 1))
        f = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32))
        heads = RLPHeads(32, 8)
        opt = torch.optim.Adam(list(f.parameters()) + list(heads.parameters()), lr=1e-2)
        for _ in range(100):
            out = heads(f(X), y)
            opt.zero_grad()
            (out.loss_rnd + lam * out.loss_reg).backward()
            opt.step()
        return heads(f(X), y).correct.item() / 128
    acc = [train(lam) for lam in (0.0, 1.0)]
    assert acc[0] > 0.3 and acc[1] < 0.5 * acc[0], acc       # chance: 1/8


def test_chunked_matches_dense_without_full_logits():
    B, d, n, h = 64, 16, 20_000, 2                # d < B: a B×n tensor is the biggest thing around
    torch.manual_seed(0)
    W = (torch.randn(h, n, d) * 0.3).requires_grad_()
    b = (torch.randn(h, n) * 0.1).requires_grad_()
    z = torch.randn(B, d, requires_grad=True)
    y = torch.randint(0, n, (B, h))
    saved = []

    def run(chunk):
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            l_rnd, l_reg, cor = rlp_head_losses(z.detach(), z, W, b, y, chunk=chunk)
        gs = torch.autograd.grad(l_rnd.sum() + LAM * l_reg.mean(), [W, b, z])
        return l_rnd, l_reg, cor, gs

    dense = run(n)
    assert max(saved) >= h * B * n                                   # the dense path keeps its tile
    saved.clear()
    chunked = run(1000)
    assert max(saved) < B * n                                        # nothing logits-sized is kept
    for a, c in zip(dense[:3], chunked[:3]):
        assert torch.allclose(a.float(), c.float(), rtol=1e-5, atol=0)
    for a, c in zip(dense[3], chunked[3]):
        assert _rel(c, a) < 1e-4
    # and the chunked backward allocates no B×n tensor either (CPU allocator events)
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        l_rnd, l_reg, _ = rlp_head_losses(z.detach(), z, W, b, y, chunk=1000)
        torch.autograd.grad(l_rnd.sum() + LAM * l_reg.mean(), [W, b, z])
    biggest = max(e.self_cpu_memory_usage for e in prof.events())
    assert biggest == W.numel() * 4                                 # dW, the gradient itself
    assert B * n * 4 > biggest


def test_plan_chunk():
    assert plan_chunk(1, 256, 1000) == 1000                          # small: dense
    c = plan_chunk(10, 256, 100_000)
    assert 16 <= c < 100_000 and c % 16 == 0
    assert plan_chunk(10, 256, 100_000, chunk=777) == 777
    assert plan_chunk(1, 256, 100, chunk=777) == 100
    n_dense = DENSE_BYTES // (4 * 256)
    assert plan_chunk(1, 256, n_dense) == n_dense and plan_chunk(1, 256, n_dense + 1) < n_dense


def test_init_deterministic_and_linear_like():
    torch.manual_seed(5)
    a = RLPHeads(64, 100, heads=3, hidden=32)
    torch.manual_seed(5)
    b = RLPHeads(64, 100, heads=3, hidden=32)
    for (k, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), k
    assert a.w1.abs().max() <= 1 / 64 ** 0.5 and a.weight.abs().max() <= 1 / 32 ** 0.5
    assert a.w1.abs().max() > 0.9 / 64 ** 0.5                        # U(±1/√fan_in), not smaller
    assert a.weight.shape == (3, 100, 32) and a.w1.shape == (3, 32, 64)
    pc = RLPHeads(8, 10, heads=2, layout="per_class", num_classes=5)
    assert pc.weight.shape == (10, 10, 8)


def test_bad_inputs_name_the_problem():
    m = RLPHeads(8, 10, heads=2)
    with pytest.raises(ValueError, match=r"features must be \(B, 8\)"):
        m(torch.randn(4, 7), torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"y_rand must be \(4, 2\)"):
        m(torch.randn(4, 8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="layout"):
        RLPHeads(8, 10, layout="bogus")
    with pytest.raises(ValueError, match="reg"):
        RLPHeads(8, 10, reg="bogus")
    with pytest.raises(ValueError, match="n >= 2"):
        RLPHeads(8, 1)
    pc = RLPHeads(8, 10, layout="per_class", num_classes=3)
    with pytest.raises(ValueError, match="y_class"):
        pc(torch.randn(4, 8), torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        pc(torch.randn(4, 8), torch.zeros(4, 1, dtype=torch.long), torch.tensor([0, 1, 2, 3]))


def test_autocast_bf16_runs_heads_in_fp32():
    m, z, y, _ = _setup(heads=2, chunk=9, dtype=torch.float32)
    ref = m(z, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(z.to(torch.bfloat16), y)
    assert out.loss_rnd.dtype == torch.float32
    # only the bf16 rounding of z differs
    assert torch.allclose(out.loss_rnd_heads, ref.loss_rnd_heads, rtol=2e-2)
    out.loss_rnd.backward()
    assert m.weight.grad.dtype == torch.float32


def test_zero_weight_samples_are_ignored():
    # the padding contract used by layout="per_class": weight 0 → no loss, no gradient, not counted
    torch.manual_seed(0)
    H, B, n, d = 2, 10, 30, 6
    W = torch.randn(H, n, d, dtype=torch.float64, requires_grad=True)
    b = torch.randn(H, n, dtype=torch.float64, requires_grad=True)
    x = torch.randn(H, B, d, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, n, (B, H))
    w = torch.full((B, H), 1.0 / 7, dtype=torch.float64)
    w[7:] = 0
    full = rlp_head_losses(x.detach(), x, W, b, y, chunk=8, weight=w)
    part = rlp_head_losses(x[:, :7].detach(), x[:, :7], W, b, y[:7], chunk=8)
    for a, c in zip(full, part):
        assert torch.allclose(a, c, rtol=1e-12, atol=0) if a.is_floating_point() else torch.equal(a, c)
    gx = torch.autograd.grad(full[0].sum() + full[1].sum(), [x, W])
    assert gx[0][:, 7:].abs().max() == 0
    gp = torch.autograd.grad(part[0].sum() + part[1].sum(), [W])[0]
    assert _rel(gx[1], gp) < 1e-12
