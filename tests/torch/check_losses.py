#!/usr/bin/env python3
# tests/torch/check_losses.py: recomputes the hand-computed loss values of tests/test_loss.cpp with
# PyTorch (cross_entropy with weights and label smoothing, the usual SimCLR NT-Xent and MoCo InfoNCE
# code), so the constants fovea is tested against agree with the framework users know. Exit 0 when
# every value matches, 77 (skip) when torch cannot be imported.
import math
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("check_losses: torch not importable, skipping")
    sys.exit(77)

torch.set_default_dtype(torch.float64)
failures = []


def expect(name, got, want, tol=1e-9):
    ok = abs(got - want) <= tol
    print(f"{'ok  ' if ok else 'FAIL'} {name}: torch {got:.10f}, fovea test constant {want:.10f}")
    if not ok:
        failures.append(name)


# Cross-entropy: tests/test_loss.cpp CrossEntropy.HandComputedWeightsAndSmoothing.
x = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
y = torch.tensor([2, 0])
w = torch.tensor([1.0, 2.0, 3.0])
expect("cross_entropy", F.cross_entropy(x, y).item(), 0.7531091265, 1e-10)
expect("cross_entropy weighted", F.cross_entropy(x, y, weight=w).item(), 0.5803575455, 1e-10)
expect("cross_entropy weighted smoothed", F.cross_entropy(x, y, weight=w, label_smoothing=0.1).item(),
       0.6309660369, 1e-10)
lse0, lse1 = 3 + math.log(1 + math.exp(-1) + math.exp(-2)), 1 + math.log(3)
nll, smooth = ((lse0 - 3) + (lse1 - 1)) / 2, ((3 * lse0 - 6) + (3 * lse1 - 3)) / 2
expect("cross_entropy smoothed 0.3", F.cross_entropy(x, y, label_smoothing=0.3).item(), 0.7 * nll + 0.1 * smooth)


def nt_xent(z, tau):
    # SimCLR as commonly written: cosine similarities, self masked, positive (i + N) mod 2N.
    z = F.normalize(z, dim=1)
    m = z.shape[0]
    sim = z @ z.t() / tau
    sim = sim.masked_fill(torch.eye(m, dtype=torch.bool), float("-inf"))
    pos = (torch.arange(m) + m // 2) % m
    return F.cross_entropy(sim, pos)


def infonce(q, k, queue, tau):
    # MoCo v2: l_pos = q.k, l_neg = q.queue^T, positive at index 0.
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t()], dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long))


expect("nt_xent N=1", nt_xent(torch.tensor([[3.0, 4.0], [1.0, -2.0]]), 0.5).item(), 0.0)
expect("nt_xent N=2 tau=1", nt_xent(torch.tensor([[1.0, 0], [0, 1.0], [2.0, 0], [0, 3.0]]), 1.0).item(),
       0.5514447139, 1e-10)
expect("infonce N=1", infonce(torch.tensor([[1.0, 0]]), torch.tensor([[2.0, 0]]),
                              torch.tensor([[0, 1.0], [-1.0, 0]]), 1.0).item(), 0.4076059644, 1e-10)

# Gradient of the InfoNCE hand case (InfoNce.HandComputed): dq = (0, 1 / (e + 1 + 1/e)).
q = torch.tensor([[1.0, 0]], requires_grad=True)
infonce(q, torch.tensor([[2.0, 0]]), torch.tensor([[0, 1.0], [-1.0, 0]]), 1.0).backward()
expect("infonce dq[0]", q.grad[0, 0].item(), 0.0)
expect("infonce dq[1]", q.grad[0, 1].item(), 1 / (math.e + 1 + 1 / math.e))

sys.exit(1 if failures else 0)
