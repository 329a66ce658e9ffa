#!/usr/bin/env python3
# tests/torch/check_optim.py: golden values for tests/test_optim.cpp (TorchGolden.*): three steps of
# torch.optim.SGD and torch.optim.AdamW on a fixed 5-element parameter with gradients
# g_k[i] = 0.5 * sin(i + 1 + k) (computed in double, rounded to float) and learning rates
# 0.1, 0.05, 0.02. Prints the C++ initialisers that the test embeds; rerun after changing a case.
# Exits 77 (skipped) when torch cannot be imported.
import math
import sys

try:
    import torch
except ImportError:
    print("check_optim.py: torch is not importable; skipped")
    sys.exit(77)

P0 = [0.5, -1.25, 2.0, 0.75, -0.3]
LRS = [0.1, 0.05, 0.02]
CASES = {
    "sgd_nesterov": lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True),
    "sgd_dampening": lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9, dampening=0.1, weight_decay=1e-2),
    "adamw": lambda p: torch.optim.AdamW([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
}


def run(make):
    p = torch.nn.Parameter(torch.tensor(P0, dtype=torch.float32))
    opt = make(p)
    for k, lr in enumerate(LRS):
        for group in opt.param_groups:
            group["lr"] = lr
        p.grad = torch.tensor([0.5 * math.sin(i + 1 + k) for i in range(len(P0))], dtype=torch.float32)
        opt.step()
    return p.detach().tolist()


print(f"// torch {torch.__version__}")
for name, make in CASES.items():
    values = ", ".join(f"{v:.9g}f" for v in run(make))
    print(f"const std::vector<float> k_{name} = {{{values}}};")
