#!/usr/bin/env python3
"""bench/torch_cpu_steps.py: PyTorch eager on the CPU, for fovea_bench's CPU training steps measured on
the same machine: resnet18_fwd_bwd/cpu/64px_b32 (torchvision ResNet-18, 5 classes),
resnet18w0.25_fwd_bwd/cpu/64px_b32 (the network the CPU main job trains: ResNet-18 at width 0.25 with
the 3x3 stride-1 stem and no max-pool, written out below since torchvision has no width setting) and
resnet50_fwd_bwd/cpu/224px_b32 (torchvision ResNet-50, 5 classes). Each step is a forward and a
backward with a given upstream gradient of the logits, the input without a gradient (as fovea_bench's
set_input_grad(false)), fp32, NCHW. Median of the timed steps after warm-ups, host-timed.

Threads: FOVEA_CPU_THREADS when set, else every core (torch.set_num_threads; Debian's torch starts
with one). Usage: /usr/bin/python3 bench/torch_cpu_steps.py [out.json] [--quick] (--quick skips
ResNet-50). Exits 77 when torch or torchvision is missing."""
import json
import os
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torchvision
except Exception as e:  # noqa: BLE001
    print(f"skip: torch/torchvision not importable: {e}")
    sys.exit(77)

threads = int(os.environ.get("FOVEA_CPU_THREADS") or os.cpu_count() or 1)
torch.set_num_threads(threads)
torch.manual_seed(0)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


def small_stem_resnet18(width=0.25, classes=5):
    c = [round(b * width) for b in (64, 128, 256, 512)]
    layers = [nn.Conv2d(3, c[0], 3, 1, 1, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU()]
    cin = c[0]
    for stage, cout in enumerate(c):
        layers += [BasicBlock(cin, cout, 1 if stage == 0 else 2), BasicBlock(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


def time_step(model, batch, size, warmup, steps):
    model.train()
    x = torch.rand(batch, 3, size, size) - 0.5
    dlogits = torch.rand(batch, 5) - 0.5

    def step():
        model(x).backward(dlogits)
        model.zero_grad(set_to_none=False)

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    t = sorted(times)[len(times) // 2]
    return {"ms": t * 1e3, "img/s": batch / t}


quick = "--quick" in sys.argv
args = [a for a in sys.argv[1:] if a != "--quick"]
cases = [
    ("resnet18_fwd_bwd/cpu/64px_b32", lambda: torchvision.models.resnet18(num_classes=5), 32, 64, 2, 10),
    ("resnet18w0.25_fwd_bwd/cpu/64px_b32", small_stem_resnet18, 32, 64, 2, 10),
]
if not quick:
    cases.append(("resnet50_fwd_bwd/cpu/224px_b32", lambda: torchvision.models.resnet50(num_classes=5), 32, 224, 1, 2))
result = {"torch": torch.__version__, "threads": threads, "mkldnn": torch.backends.mkldnn.is_available()}
print(f"torch {torch.__version__}, {threads} threads, oneDNN {'on' if result['mkldnn'] else 'off'}")
for name, make, batch, size, warmup, steps in cases:
    r = time_step(make(), batch, size, warmup, steps)
    result[name] = r
    print(f"{name:40s} {r['ms']:9.1f} ms  {r['img/s']:7.1f} img/s")
if args:
    with open(args[0], "w") as f:
        json.dump(result, f, indent=1)
