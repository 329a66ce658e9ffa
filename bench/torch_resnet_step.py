#!/usr/bin/env python3
"""bench/torch_resnet_step.py: PyTorch eager reference for fovea_bench's resnet50_fwd_bwd and
resnet50_train_step on the GPU: torchvision ResNet-50, 224x224, batch 256, NCHW, fp32 with TF32 on
(fovea's default), forward + backward with a given upstream gradient of the logits, and the same plus
an SGD (momentum 0.9, weight decay 1e-4) update. Median of 10 CUDA-event-timed steps after 3
warm-ups. Writes JSON to argv[1]; exits 77 when torch/torchvision or a GPU is missing."""
import json
import sys

try:
    import torch
    import torchvision
except Exception as e:  # noqa: BLE001
    print(f"skip: torch/torchvision not importable: {e}")
    sys.exit(77)
if not torch.cuda.is_available():
    print("skip: torch sees no GPU")
    sys.exit(77)

torch.backends.cudnn.benchmark = True  # what a PyTorch user would set for a fixed shape
torch.backends.cudnn.allow_tf32 = True
torch.backends.cuda.matmul.allow_tf32 = True
dev = torch.device("cuda")
torch.manual_seed(0)
model = torchvision.models.resnet50(num_classes=1000).to(dev).train()
x = torch.rand(256, 3, 224, 224, device=dev) - 0.5
dlogits = torch.rand(256, 1000, device=dev) - 0.5
opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)


def step(update):
    out = model(x)
    out.backward(dlogits)
    if update:
        opt.step()
    model.zero_grad(set_to_none=False)


result = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0),
          "cudnn": torch.backends.cudnn.version(), "batch": 256}
for name, update in (("resnet50_fwd_bwd", False), ("resnet50_train_step", True)):
    for _ in range(3):
        step(update)
    torch.cuda.synchronize()
    times = []
    for _ in range(10):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        step(update)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    t = sorted(times)[len(times) // 2]
    result[name] = {"ms": t * 1e3, "img/s": 256 / t}
    print(f"torch {name}: {t * 1e3:.1f} ms, {256 / t:.0f} img/s")
result["peak_MiB"] = torch.cuda.max_memory_allocated() / 2**20
with open(sys.argv[1], "w") as f:
    json.dump(result, f)
