#!/usr/bin/env python3
"""bench/torch_resnet_step.py: PyTorch eager reference for fovea_bench's resnet50_fwd_bwd,
resnet50_train_step and resnet50_simclr_step on the GPU: torchvision ResNet-50, 224x224, batch 256,
NCHW, fp32 with TF32 on (fovea's default), forward + backward with a given upstream gradient of the
logits, and the same plus an SGD (momentum 0.9, weight decay 1e-4) update. Median of 10
CUDA-event-timed steps after 3 warm-ups. The SimCLR step: ResNet-50 with fc replaced by
Linear(2048, 2048) -> ReLU -> Linear(2048, 128) as fovea's projection head, both views of 256 images
(512 rows), NT-Xent (tau 0.5) by F.normalize + matmul + masked cross-entropy, loss.item() (fovea's
task reads its loss back too), and LARS (momentum 0.9, weight decay 1e-6, trust 1e-3, biases and
batch-norm parameters excluded) written with torch._foreach ops; host-timed around a synchronised
step, as fovea's is. Writes JSON to argv[1]; exits 77 when torch/torchvision or a GPU is missing."""
import json
import sys
import time

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

# ---- SimCLR step -------------------------------------------------------------------------------
del model, opt, x, dlogits
torch.cuda.empty_cache()
torch.cuda.reset_peak_memory_stats()
torch.manual_seed(0)
net = torchvision.models.resnet50()
net.fc = torch.nn.Sequential(torch.nn.Linear(2048, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 128))
net = net.to(dev).train()
n, tau = 256, 0.5
views = torch.rand(2 * n, 3, 224, 224, device=dev) - 0.5
targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(dev)
eye = torch.eye(2 * n, dtype=torch.bool, device=dev)
adapt = [p for p in net.parameters() if p.dim() > 1]   # conv and linear weights
plain = [p for p in net.parameters() if p.dim() <= 1]  # biases and batch-norm parameters
buf_a = [torch.zeros_like(p) for p in adapt]
buf_p = [torch.zeros_like(p) for p in plain]
momentum, wd, eta, lr = 0.9, 1e-6, 1e-3, 0.3


@torch.no_grad()
def lars():
    grads = [p.grad for p in adapt]
    wn = torch.stack(torch._foreach_norm(adapt))
    gn = torch.stack(torch._foreach_norm(grads))
    trust = torch.where((wn > 0) & (gn > 0), eta * wn / (gn + wd * wn), torch.ones_like(wn))
    d = torch._foreach_add(grads, adapt, alpha=wd)
    torch._foreach_mul_(d, list((trust * lr).unbind()))
    torch._foreach_mul_(buf_a, momentum)
    torch._foreach_add_(buf_a, d)
    torch._foreach_sub_(adapt, buf_a)
    torch._foreach_mul_(buf_p, momentum)
    torch._foreach_add_(buf_p, [p.grad for p in plain], alpha=lr)
    torch._foreach_sub_(plain, buf_p)


def simclr_step():
    z = torch.nn.functional.normalize(net(views), dim=1)
    logits = (z @ z.t() / tau).masked_fill(eye, float("-inf"))
    loss = torch.nn.functional.cross_entropy(logits, targets)
    loss.backward()
    lars()
    net.zero_grad(set_to_none=False)
    return loss.item()


try:
    for _ in range(3):
        simclr_step()
    torch.cuda.synchronize()
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        simclr_step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    t = sorted(times)[len(times) // 2]
    result["resnet50_simclr_step"] = {"ms": t * 1e3, "img/s": n / t,
                                      "peak_MiB": torch.cuda.max_memory_allocated() / 2**20}
    print(f"torch resnet50_simclr_step: {t * 1e3:.1f} ms, {n / t:.0f} img/s (256 images, 512 views)")
except RuntimeError as e:  # e.g. out of memory: keep the other figures
    print(f"torch resnet50_simclr_step failed: {e}")
with open(sys.argv[1], "w") as f:
    json.dump(result, f)
