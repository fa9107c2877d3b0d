"""RLP heads: random-label prediction heads with gradient routing, fused and chunked over n.

    heads = RLPHeads(d=512, n=10_000, heads=1)              # one tap's heads
    out = heads(z, y_rand)                                   # z (B, d) tap features, y_rand (B, h)
    loss = loss_class + out.loss_rnd + lam * out.loss_reg    # one backward for everything
    acc_heads = out.correct / B                              # random-label accuracy per head

Routing (paper eq. 3/4, DESIGN "RLP heads"): L_rnd trains the head only (z is a constant to it);
L_reg = -log(1 - p̂_ŷ) (or CE to the uniform distribution, reg="uniform") trains the feature
extractor only (every head parameter is a constant to it). The logits are computed once: the
custom autograd functions below take the head input twice (`h_head`, the value the head's
parameters see, and `h_feat`, the path back to the feature extractor) and send the gradient of
L_rnd to the parameters/`h_head` and the gradient of L_reg to `h_feat`.

`rlp_head_losses` is the fused loss: for n labels it never materializes the (h, B, n) logits unless
they fit a small budget (then it keeps them and skips the backward recompute); otherwise it walks
n in chunks with an online logsumexp and recomputes each chunk once in backward, where that one
recompute serves dW, db and both input gradients. `reference_losses` is the plain-autograd
two-pass computation the tests and bench/rlp_head.py compare against (bench/rlp_head.py prints
the speed and memory ratios). torch's `F.linear_cross_entropy` (chunked with `options=`) covers
L_rnd alone; pairing it with L_reg would compute the logits twice, so it is not used here.
The heads always run in the parameters' dtype with autocast off: a softmax over 10^5 labels in
bf16 would lose the small probabilities both losses depend on.

Length (~490 lines, over the house's ~400): the fused kernel, its two autograd functions and the
plain-autograd reference the tests compare it with belong in one place.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REGS = ("log1m", "uniform")
LAYOUTS = ("shared", "per_class")

# Policy for chunk=0 (auto), tuned on a 2-core AVX-512 CPU with bench/rlp_head.py:
# - keep the whole (h, B, n) logits from forward (no recompute in backward) while they fit
#   DENSE_BYTES; that saves a quarter of the head's matmul flops;
# - otherwise walk n in tiles of about TILE_BYTES of logits (h·B·chunk floats) and recompute.
DENSE_BYTES = 64 << 20
TILE_BYTES = 8 << 20


def plan_chunk(heads: int, batch: int, n: int, itemsize: int = 4, chunk: int = 0) -> int:
    """Labels per chunk for the fused loss. `chunk` > 0 forces it; 0 picks one by size.
    A result >= n means the dense path (one chunk, logits kept for backward)."""
    if chunk > 0:
        return min(int(chunk), n)
    per_label = max(1, heads * batch * itemsize)      # bytes of logits per label column
    if per_label * n <= DENSE_BYTES:
        return n
    c = max(16, TILE_BYTES // per_label)
    return min(n, (c // 16) * 16 or 16)


class _FusedRLPLoss(torch.autograd.Function):
    """Per-head batch sums of w·L_rnd and w·L_reg, and correct counts, for H heads at once.

    Shapes: x_head, x_feat (B, d) shared by the heads or (H, B, d) per head; W (H, n, d); b (H, n);
    y (H, B) int64; w (H, B) per-sample weights (1/B for a batch mean, 0 for padding).
    Internal logits layout is (H, c, B) (a chunk of labels × batch), so a chunk of W is a
    contiguous (c, d) slice per head and every GEMM runs on plain row-major operands.
    Per-(head, sample) statistics kept across chunks: the target logit s_t, lse_ex = logsumexp
    over j != t and max_ex = max over j != t; from them L_rnd = softplus(lse_ex - s_t),
    -log(1 - p_t) = softplus(s_t - lse_ex), correct = s_t > max_ex.
    """

    @staticmethod
    def forward(ctx, x_head, x_feat, W, b, y, w, reg, chunk):
        H, n, d = W.shape
        B = x_head.shape[-2]
        xT = _batched(x_head.transpose(-1, -2), H)                      # (H, d, B)
        c = plan_chunk(H, B, n, W.element_size(), chunk)
        dense = c >= n
        neg_inf = float("-inf")
        lse_ex = x_head.new_full((H, B), neg_inf)
        max_ex = x_head.new_full((H, B), neg_inf)
        s_t = x_head.new_zeros((H, B))
        s_sum = x_head.new_zeros((H, B)) if reg == "uniform" else None
        buf = x_head.new_empty(H * min(c, n) * B)                       # one scratch tile, reused
        for j0 in range(0, n, c):
            j1 = min(n, j0 + c)
            s = torch.baddbmm(b[:, j0:j1].unsqueeze(2), W[:, j0:j1], xT,
                              out=buf[:H * (j1 - j0) * B].view(H, j1 - j0, B))   # (H, cj, B)
            if s_sum is not None:
                s_sum += s.sum(1)
            idx, inside = _target_slot(y, j0, j1)
            st = s.gather(1, idx).squeeze(1)
            s_t = torch.where(inside, st, s_t)
            # mask the target out: s now holds exactly the terms of lse_{j != t}
            s.scatter_(1, idx, torch.where(inside, neg_inf, st).unsqueeze(1))
            cm = s.amax(1)                                              # (H, B); -inf if only target
            max_ex = torch.maximum(max_ex, cm)
            cm = torch.where(torch.isfinite(cm), cm, 0.0)
            e = s.sub_(cm.unsqueeze(1)).exp_()                          # exp(s - cm) in place, 0 at t
            lse_ex = torch.logaddexp(lse_ex, cm + e.sum(1).log())
        # dense: keep the one tile e = exp(s - cm) for backward, where q = exp(s - lse_ex) = e·exp(cm - lse_ex)
        saved_e = buf.view(H, n, B) if dense else None
        q_scale = torch.exp(cm - lse_ex) if dense else None
        d_ex = s_t - lse_ex                                             # log(p_t / (1 - p_t))
        zero = torch.zeros_like(d_ex)
        l_rnd = torch.logaddexp(zero, -d_ex)                            # lse_all - s_t
        if reg == "log1m":
            l_reg = torch.logaddexp(zero, d_ex)                         # lse_all - lse_ex = -log(1 - p_t)
        else:
            l_reg = torch.logaddexp(lse_ex, s_t) - s_sum / n            # CE to uniform
        loss_rnd = (l_rnd * w).sum(1)
        loss_reg = (l_reg * w).sum(1)
        correct = ((s_t > max_ex) & (w > 0)).sum(1)
        ctx.mark_non_differentiable(correct)
        ctx.set_materialize_grads(False)
        ctx.reg, ctx.c = reg, c
        ctx.save_for_backward(x_head, W, b, y, w, s_t, lse_ex, saved_e, q_scale)
        return loss_rnd, loss_reg, correct

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_rnd, g_reg, _g_correct):
        x_head, W, b, y, w, s_t, lse_ex, saved_e, q_scale = ctx.saved_tensors
        need_xh, need_xf, need_W, need_b = ctx.needs_input_grad[:4]
        head = g_rnd is not None and (need_xh or need_W or need_b)
        feat = g_reg is not None and need_xf
        dxh = dxf = dW = db = None
        if not (head or feat):
            return dxh, dxf, dW, db, None, None, None, None
        H, n, d = W.shape
        B, dx = x_head.shape[-2], x_head.shape[-1]
        c, reg = ctx.c, ctx.reg
        xT = _batched(x_head.transpose(-1, -2), H)                      # (H, d, B)
        xb = _batched(x_head, H)                                        # (H, B, d)
        p_t = torch.sigmoid(s_t - lse_ex)                               # p̂_target
        rho = torch.sigmoid(lse_ex - s_t)                               # 1 - p̂_target
        # Both gradients are row scalings of q = exp(s - lse_ex) (q = 0 at the target), i.e. of one
        # exp pass, with the target entry set apart:
        #   rnd:     p - onehot: rho·q_j (j != t),   p_t - 1 at t
        #   log1m:   p - q:      -p_t·q_j (j != t),  p_t at t      (q: softmax over j != t)
        #   uniform: p - 1/n:    rho·q_j - 1/n,      p_t - 1/n at t
        # dense: q = saved_e·q_scale, folded into the row factors.
        fold = q_scale if saved_e is not None else 1.0
        if head:
            a = g_rnd.unsqueeze(1) * w                                  # (H, B)
            alpha, tval_h = (a * rho * fold).unsqueeze(1), a * (p_t - 1.0)
            dW = torch.empty_like(W) if need_W else None
            db = torch.empty_like(b) if need_b else None
            acc_h = x_head.new_zeros((H, B, dx)) if need_xh else None
        if feat:
            bb = g_reg.unsqueeze(1) * w
            if reg == "log1m":
                beta, tval_f, shift = (-bb * p_t * fold).unsqueeze(1), bb * p_t, None
            else:
                beta, tval_f, shift = (bb * rho * fold).unsqueeze(1), bb * (p_t - 1.0 / n), (bb / n).unsqueeze(1)
            acc_f = x_head.new_zeros((H, B, dx))
        cmax = min(c, n)
        qbuf = x_head.new_empty(H * cmax * B) if saved_e is None else None
        gbuf = x_head.new_empty(H * cmax * B)
        lse_b = lse_ex.unsqueeze(1)
        for j0 in range(0, n, c):
            j1 = min(n, j0 + c)
            cj = j1 - j0
            Wc = W[:, j0:j1]
            idx, inside = _target_slot(y, j0, j1)
            if saved_e is not None:
                q = saved_e                                             # kept from forward; read only
            else:                                                       # recompute the tile once
                q = torch.baddbmm(b[:, j0:j1].unsqueeze(2), Wc, xT, out=qbuf[:H * cj * B].view(H, cj, B))
                q.scatter_(1, idx, torch.where(inside, float("-inf"), q.gather(1, idx).squeeze(1)).unsqueeze(1))
                q.sub_(lse_b).exp_()                                    # (H, cj, B); 0 at targets
            g = gbuf[:H * cj * B].view(H, cj, B)
            if head:
                gh = torch.mul(q, alpha, out=g)
                _set_target(gh, idx, inside, tval_h)
                if need_W:
                    _bmm_into(dW[:, j0:j1], gh, xb)                     # (H, cj, B) @ (H, B, d)
                if need_b:
                    db[:, j0:j1] = gh.sum(2)
                if need_xh:
                    acc_h.baddbmm_(gh.transpose(1, 2), Wc)              # (H, B, cj) @ (H, cj, d)
            if feat:
                # the kept dense tile is read-only (backward may run twice with retain_graph)
                gf = torch.mul(q, beta, out=g) if saved_e is not None else q.mul_(beta)
                if shift is not None:
                    gf.sub_(shift)
                _set_target(gf, idx, inside, tval_f)
                acc_f.baddbmm_(gf.transpose(1, 2), Wc)
        if head and need_xh:
            dxh = acc_h.sum(0) if x_head.dim() == 2 else acc_h
        if feat:
            dxf = acc_f.sum(0) if x_head.dim() == 2 else acc_f
        return dxh, dxf, dW, db, None, None, None, None


def _batched(t: Tensor, H: int) -> Tensor:
    """A (r, c) matrix shared by H heads as an (H, r, c) stride-0 view; (H, r, c) passes through."""
    return t.unsqueeze(0).expand(H, *t.shape) if t.dim() == 2 else t


def _target_slot(y: Tensor, j0: int, j1: int) -> tuple[Tensor, Tensor]:
    """For a label chunk [j0, j1): the in-chunk target row (H, 1, B) and whether it is inside (H, B)."""
    loc = y - j0
    inside = (loc >= 0) & (loc < j1 - j0)
    return loc.clamp(0, j1 - j0 - 1).unsqueeze(1), inside


def _set_target(g: Tensor, idx: Tensor, inside: Tensor, val: Tensor) -> None:
    """g[k, y_kb - j0, b] = val[k, b] where the target lies in this chunk (g: (H, cj, B))."""
    g.scatter_(1, idx, torch.where(inside, val, g.gather(1, idx).squeeze(1)).unsqueeze(1))


def _bmm_into(dst: Tensor, a: Tensor, b: Tensor) -> None:
    """dst = a @ b batched over heads, written in place. A chunk of dW (H > 1) is strided across
    heads but contiguous per head: one mm per head avoids a temporary and a copy."""
    if dst.is_contiguous():
        torch.bmm(a, b, out=dst)
    else:
        for k in range(dst.shape[0]):
            torch.mm(a[k], b[k], out=dst[k])


def rlp_head_losses(h_head: Tensor, h_feat: Tensor, W: Tensor, b: Tensor, y: Tensor,
                    reg: str = "log1m", chunk: int = 0, weight: Tensor | None = None
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """Fused routed RLP losses for h heads: returns (L_rnd (h,), L_reg (h,), correct (h,) long).

    h_head, h_feat: (B, d) shared by all heads, or (h, B, d) one input per head; the same values.
        Gradients of L_rnd reach W, b and h_head only; gradients of L_reg reach h_feat only.
    W (h, n, d), b (h, n); y (B, h) int64 random labels; weight (B, h) per-sample weights
    (default 1/B: the losses are batch means; 0 marks padding, which correct does not count).
    reg: "log1m" (-log(1 - p̂_y)) or "uniform" (CE towards 1/n); chunk: labels per chunk (0 = auto).
    """
    if reg not in REGS:
        raise ValueError(f"rlp reg {reg!r}: expected one of {', '.join(REGS)}")
    if W.dim() != 3 or b.shape != W.shape[:2]:
        raise ValueError(f"rlp head weights: W must be (h, n, d) and b (h, n); got {tuple(W.shape)}, {tuple(b.shape)}")
    H, n, d = W.shape
    if h_head.shape != h_feat.shape or h_head.shape[-1] != d or h_head.dim() not in (2, 3) \
            or (h_head.dim() == 3 and h_head.shape[0] != H):
        raise ValueError(f"rlp head input: expected (B, {d}) or ({H}, B, {d}) for h_head and h_feat; "
                         f"got {tuple(h_head.shape)} and {tuple(h_feat.shape)}")
    B = h_head.shape[-2]
    if y.shape != (B, H):
        raise ValueError(f"rlp random labels: expected shape ({B}, {H}); got {tuple(y.shape)}")
    if weight is not None and weight.shape != (B, H):
        raise ValueError(f"rlp sample weights: expected shape ({B}, {H}); got {tuple(weight.shape)}")
    yt = y.t().long().contiguous()
    wt = (h_head.new_full((H, B), 1.0 / B) if weight is None else weight.t().to(h_head.dtype).contiguous())
    return _FusedRLPLoss.apply(h_head, h_feat, W, b, yt, wt, reg, int(chunk))


class _RoutedAffine(torch.autograd.Function):
    """y = x·γ + β computed once, returned twice: (y_head, y_feat). γ, β (and x_head) get the
    gradient of y_head only; x_feat gets the gradient of y_feat only (through γ, a constant)."""

    @staticmethod
    def forward(ctx, x_head, x_feat, gamma, beta):
        y = torch.addcmul(beta, x_head, gamma)
        ctx.save_for_backward(x_head, gamma)
        ctx.set_materialize_grads(False)
        return y, y.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gh, gf):
        x_head, gamma = ctx.saved_tensors
        nx = ctx.needs_input_grad
        dxh = dxf = dg = dbeta = None
        if gh is not None:
            dxh = gh * gamma if nx[0] else None
            dg = (gh * x_head).sum(0) if nx[2] else None
            dbeta = gh.sum(0) if nx[3] else None
        if gf is not None and nx[1]:
            dxf = gf * gamma
        return dxh, dxf, dg, dbeta


class _RoutedLinearReLU(torch.autograd.Function):
    """r = relu(x W1ᵀ + b1) for H heads computed once, returned twice: (r_head, r_feat).
    x (B, d) shared or (H, B, d); W1 (H, dh, d); b1 (H, dh) → r (H, B, dh).
    W1, b1, x_head get the gradient of r_head; x_feat gets the gradient of r_feat (W1 constant)."""

    @staticmethod
    def forward(ctx, x_head, x_feat, W1, b1):
        shared = x_head.dim() == 2
        xb = _batched(x_head, W1.shape[0])                              # (H, B, d)
        r = torch.baddbmm(b1.unsqueeze(1), xb, W1.transpose(1, 2)).relu_()   # (H, B, dh)
        ctx.save_for_backward(x_head, W1, r)
        ctx.shared = shared
        ctx.set_materialize_grads(False)
        return r, r.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gh, gf):
        x_head, W1, r = ctx.saved_tensors
        nx = ctx.needs_input_grad
        mask = r > 0
        dxh = dxf = dW1 = db1 = None
        if gh is not None and (nx[0] or nx[2] or nx[3]):
            gh = gh * mask
            if nx[2]:
                dW1 = torch.bmm(gh.transpose(1, 2), _batched(x_head, W1.shape[0]))                 # (H, dh, B) @ (H, B, d)
            if nx[3]:
                db1 = gh.sum(1)
            if nx[0]:
                dxh = torch.bmm(gh, W1)
                dxh = dxh.sum(0) if ctx.shared else dxh
        if gf is not None and nx[1]:
            dxf = torch.bmm(gf * mask, W1)
            dxf = dxf.sum(0) if ctx.shared else dxf
        return dxh, dxf, dW1, db1


@dataclass
class RLPOut:
    """What one tap's heads give per step. loss_rnd: Σ over heads of the batch-mean L_rnd (head
    parameters only); loss_reg: mean over heads of the batch-mean L_reg (features only; no
    gradient when regularize=False); correct (h,) long: argmax == random label counts;
    loss_*_heads (h,): the per-head batch means, detached."""
    loss_rnd: Tensor
    loss_reg: Tensor
    correct: Tensor
    loss_rnd_heads: Tensor
    loss_reg_heads: Tensor


class RLPHeads(nn.Module):
    """All RLP heads of one tap: optional LayerNorm(d) → optional hidden Linear+ReLU per head →
    output Linear(d', n) per head. layout="per_class" (paper 000) keeps num_classes × heads heads
    and a sample uses the heads of its class. Parameters see L_rnd only; z sees L_reg only."""

    def __init__(self, d: int, n: int, heads: int = 1, hidden: int = 0, norm: bool = False,
                 layout: str = "shared", num_classes: int = 1, reg: str = "log1m", chunk: int = 0):
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"rlp layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
        if reg not in REGS:
            raise ValueError(f"rlp reg {reg!r}: expected one of {', '.join(REGS)}")
        if d < 1 or n < 2 or heads < 1 or hidden < 0 or chunk < 0 or num_classes < 1:
            raise ValueError(f"rlp heads: need d >= 1, n >= 2, heads >= 1, hidden >= 0, chunk >= 0, "
                             f"num_classes >= 1; got d={d}, n={n}, heads={heads}, hidden={hidden}, "
                             f"chunk={chunk}, num_classes={num_classes}")
        self.d, self.n, self.heads, self.hidden = d, n, heads, hidden
        self.layout, self.num_classes, self.reg, self.chunk = layout, num_classes, reg, chunk
        groups = num_classes if layout == "per_class" else 1
        H = groups * heads                                  # stored heads; index = class·heads + k
        self.norm = nn.LayerNorm(d) if norm else None
        d_out_in = hidden or d
        if hidden:
            self.w1 = nn.Parameter(torch.empty(H, hidden, d))
            self.b1 = nn.Parameter(torch.empty(H, hidden))
        else:
            self.register_parameter("w1", None)
            self.register_parameter("b1", None)
        self.weight = nn.Parameter(torch.empty(H, n, d_out_in))
        self.bias = nn.Parameter(torch.empty(H, n))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's init: kaiming_uniform(a=√5) ≡ U(±1/√fan_in) for weight and bias
        with torch.no_grad():
            if self.hidden:
                bound = 1.0 / math.sqrt(self.d)
                self.w1.uniform_(-bound, bound)
                self.b1.uniform_(-bound, bound)
            bound = 1.0 / math.sqrt(self.weight.shape[-1])
            self.weight.uniform_(-bound, bound)
            self.bias.uniform_(-bound, bound)
            if self.norm is not None:
                self.norm.reset_parameters()

    def extra_repr(self) -> str:
        return (f"d={self.d}, n={self.n}, heads={self.heads}, hidden={self.hidden}, "
                f"norm={self.norm is not None}, layout={self.layout}, num_classes={self.num_classes}, "
                f"reg={self.reg}, chunk={self.chunk}")

    def _check(self, z: Tensor, y_rand: Tensor, y_class: Tensor | None) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.d:
            raise ValueError(f"RLPHeads: features must be (B, {self.d}); got {tuple(z.shape)}")
        B = z.shape[0]
        if y_rand.dim() == 1 and self.heads == 1:
            y_rand = y_rand.unsqueeze(1)
        if y_rand.shape != (B, self.heads):
            raise ValueError(f"RLPHeads: y_rand must be ({B}, {self.heads}); got {tuple(y_rand.shape)}")
        if self.layout == "per_class" and (y_class is None or y_class.shape != (B,)):
            raise ValueError(f"RLPHeads(layout='per_class'): y_class must be ({B},) class labels; "
                             f"got {None if y_class is None else tuple(y_class.shape)}")
        return y_rand.long()

    def forward(self, z: Tensor, y_rand: Tensor, y_class: Tensor | None = None,
                regularize: bool = True) -> RLPOut:
        y_rand = self._check(z, y_rand, y_class)
        with torch.autocast(z.device.type, enabled=False):              # see the module docstring
            return self._forward(z.to(self.weight.dtype), y_rand, y_class, regularize)

    def _forward(self, z: Tensor, y_rand: Tensor, y_class: Tensor | None, regularize: bool) -> RLPOut:
        zf = z if regularize else z.detach()
        if self.norm is not None:
            xn = F.layer_norm(zf, (self.d,), None, None, self.norm.eps)  # param-free part: routes as z
            xh, xf = _RoutedAffine.apply(xn.detach(), xn, self.norm.weight, self.norm.bias)
        else:
            xh, xf = z.detach(), zf
        weight = None
        if self.layout == "per_class":
            xh, xf, y_rand, weight = _group_by_class(xh, xf, y_rand, y_class.long(), self.num_classes, self.heads)
        if self.hidden:
            xh, xf = _RoutedLinearReLU.apply(xh, xf, self.w1, self.b1)
        l_rnd, l_reg, correct = rlp_head_losses(xh, xf, self.weight, self.bias, y_rand, self.reg,
                                                self.chunk, weight)
        if self.layout == "per_class":                    # (classes·heads,) → (heads,)
            l_rnd = l_rnd.view(self.num_classes, self.heads).sum(0)
            l_reg = l_reg.view(self.num_classes, self.heads).sum(0)
            correct = correct.view(self.num_classes, self.heads).sum(0)
        loss_reg = l_reg.mean()
        return RLPOut(loss_rnd=l_rnd.sum(), loss_reg=loss_reg if regularize else loss_reg.detach(),
                      correct=correct, loss_rnd_heads=l_rnd.detach(), loss_reg_heads=l_reg.detach())


def _group_by_class(xh: Tensor, xf: Tensor, y_rand: Tensor, y_class: Tensor, C: int, h: int):
    """Batch → per-class padded groups for layout="per_class".

    Returns per-head inputs (C·h, m, d) (m = the largest class count in the batch), labels
    (m, C·h) and weights (m, C·h) = 1/B for real samples, 0 for padding. Costs one host sync
    (m sizes the tensors) and wastes at most the padding, against C× for running every class's
    head on every sample."""
    B, d = xh.shape
    counts = torch.bincount(y_class, minlength=C)
    if counts.numel() > C:
        raise ValueError(f"RLPHeads(layout='per_class'): class labels must lie in [0, {C}); "
                         f"got max {int(y_class.max())}")
    m = int(counts.max())
    order = torch.argsort(y_class, stable=True)
    cls = y_class[order]
    pos = torch.arange(B, device=y_class.device) - (torch.cumsum(counts, 0) - counts)[cls]
    idx = torch.full((C * m,), B, dtype=torch.long, device=y_class.device)   # B → the zero pad row
    idx[cls * m + pos] = order

    def group(x):                                                   # (B, d) → (C·h, m, d)
        g = torch.cat([x, x.new_zeros(1, d)])[idx].view(C, 1, m, d)
        return g.expand(C, h, m, d).reshape(C * h, m, d)

    yg = torch.cat([y_rand, y_rand.new_zeros(1, h)])[idx].view(C, m, h)
    yg = yg.permute(1, 0, 2).reshape(m, C * h)
    valid = (idx < B).view(C, m).t()                                # (m, C)
    w = (valid.to(xh.dtype) / B).repeat_interleave(h, dim=1)        # (m, C·h)
    return group(xh), group(xf), yg, w


def head_logits(heads: RLPHeads, z: Tensor, y_class: Tensor | None = None,
                params: dict[str, Tensor] | None = None) -> Tensor:
    """Plain dense logits (B, h, n) of the heads each sample uses, by ordinary autograd ops (for
    evaluation and the reference). `params` overrides the module's parameters by name."""
    p = dict(heads.named_parameters()) if params is None else params
    x = z
    if heads.norm is not None:
        x = F.layer_norm(x, (heads.d,), p["norm.weight"], p["norm.bias"], heads.norm.eps)
    if heads.hidden:
        x = torch.relu(torch.einsum("bd,kjd->kbj", x, p["w1"]) + p["b1"].unsqueeze(1))   # (H, B, dh)
        s = torch.einsum("kbi,kji->bkj", x, p["weight"])
    else:
        s = torch.einsum("bd,kjd->bkj", x, p["weight"])
    s = s + p["bias"]                                                 # (B, H, n)
    if heads.layout == "per_class":                                   # every class's heads, then pick
        s = s.view(z.shape[0], heads.num_classes, heads.heads, heads.n)
        s = s[torch.arange(z.shape[0], device=z.device), y_class.long()]   # (B, h, n)
    return s


def reference_losses(heads: RLPHeads, z: Tensor, y_rand: Tensor, y_class: Tensor | None = None
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """Two-pass plain-autograd reference: dense logits once with z detached (→ L_rnd, grads to the
    head) and once with every head parameter detached (→ L_reg, grads to z). Returns per-head
    batch means (L_rnd (h,), L_reg (h,)) and correct counts (h,) — the numbers RLPHeads must give."""
    y = (y_rand.unsqueeze(1) if y_rand.dim() == 1 else y_rand).long()     # (B, h)
    s_head = head_logits(heads, z.detach(), y_class)                        # (B, h, n)
    frozen = {k: v.detach() for k, v in heads.named_parameters()}
    s_feat = head_logits(heads, z, y_class, frozen)
    lse = torch.logsumexp(s_head, -1)
    st = s_head.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    l_rnd = (lse - st).mean(0)
    lse_f = torch.logsumexp(s_feat, -1)
    if heads.reg == "log1m":                                           # -log(1 - p_t) = lse - lse_{j!=t}
        excl = s_feat.scatter(-1, y.unsqueeze(-1), float("-inf"))
        l_reg = (lse_f - torch.logsumexp(excl, -1)).mean(0)
    else:                                                              # CE to uniform
        l_reg = (lse_f - s_feat.mean(-1)).mean(0)
    correct = (s_head.argmax(-1) == y).sum(0)
    return l_rnd, l_reg, correct
