#!/usr/bin/env python3
# tests/torch/check_resnet.py: cross-checks fovea's ResNet-18/50 against torchvision: eval and
# train-mode logits, running statistics after one training forward, the input gradient and
# parameter gradients, from the same random weights and inputs.
#
# Usage: check_resnet.py --arch resnet18|resnet50 --device cpu|cuda --exe path/to/fovea_resnet_forward
#          [--num-classes K] [--batch N] [--size S] [--seed S] [--tol T] [--keep DIR]
# Builds torchvision's model with random weights (nothing is downloaded), perturbs every batch
# norm's weight, bias and running statistics, writes the state dict (num_batches_tracked as I64,
# which fovea must skip) and the inputs x (N, 3, S, S) and dy (N, K) as safetensors, runs the
# fovea program on them and computes the same quantities with torch on the same device (TF32
# off). Each quantity is compared by max|fovea - torch| / max|torch|.
# Exit status: 0 all within the tolerance (CPU 1e-4, CUDA 1e-3), 1 a mismatch or an error,
# 77 skipped (torch or torchvision not importable; for --device cuda: no GPU for torch or fovea).
# Needs only torch and torchvision (no numpy, no safetensors package).
import argparse
import copy
import os
import sys
import tempfile
import time

from st_io import SKIP, import_torch, print_table, read_safetensors, run_fovea, verdict, write_safetensors  # tests/torch/st_io.py, next to this script

MIN_MARGIN = 1e-6  # relative distance of every ReLU input / max-pool choice from its kink
MAX_DRAWS = 16


def parse_args():
    p = argparse.ArgumentParser(description="cross-check fovea's ResNet against torchvision")
    p.add_argument("--arch", choices=["resnet18", "resnet50"], required=True)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--exe", required=True, help="path of fovea_resnet_forward")
    p.add_argument("--num-classes", type=int, default=5)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, default=None, help="relative-to-max tolerance (default: CPU 1e-4, CUDA 1e-3)")
    p.add_argument("--keep", default=None, help="write the safetensors files to this folder and keep them")
    return p.parse_args()


# ---- the model and the reference -------------------------------------------------------------
def make_model(torch, torchvision, arch, num_classes, gen):
    model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                # beta = gamma * U(1.5, 3): most ReLU inputs sit well away from 0 (near-ties flip
                # ReLU decisions under rounding), yet 0.1-7 % per channel are still negative.
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.copy_(m.weight * torch.empty_like(m.bias).uniform_(1.5, 3.0, generator=gen))
                m.running_mean.normal_(0.0, 0.2, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
                m.num_batches_tracked.fill_(7)
    return model


def torch_reference(torch, model, x, dy, device, last_bn):
    dev = torch.device(device)
    x, dy = x.to(dev), dy.to(dev)
    ref = {}
    net = copy.deepcopy(model).to(dev).eval()
    with torch.no_grad():
        ref["eval_logits"] = net(x)

    net = copy.deepcopy(model).to(dev).train()
    xg = x.clone().requires_grad_(True)
    logits = net(xg)
    ref["train_logits"] = logits.detach()
    (logits * dy).sum().backward()
    ref["dx"] = xg.grad
    modules = dict(net.named_modules())
    for bn in ["bn1", last_bn]:
        ref["running_mean." + bn] = modules[bn].running_mean
        ref["running_var." + bn] = modules[bn].running_var
    for name, p in net.named_parameters():
        ref["grad." + name] = p.grad
    all_stats = {}
    for name, m in modules.items():
        if isinstance(m, torch.nn.BatchNorm2d):
            all_stats["running_mean." + name] = m.running_mean
            all_stats["running_var." + name] = m.running_var
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return {k: v.detach().float().cpu() for k, v in ref.items()}, {k: v.detach().cpu() for k, v in all_stats.items()}


def decision_margin(torch, model, x):
    """The smallest distance to a kink of the training forward, relative to the tensor's max|.|:
    min |v| over every ReLU input v, and the gap between the two largest values of every max-pool
    window whose maximum is not 0, computed in float64. Where it is tiny, a rounding difference
    may flip a ReLU or a max-pool choice, which changes the gradients far beyond any tolerance.
    The stem (bn1's ReLU, the max-pool) sees ~100x smaller rounding differences than the stages,
    so its distances count 100x larger."""
    net = copy.deepcopy(model).double().train()
    worst = [float("inf"), ""]

    def note(value, where):
        if value < worst[0]:
            worst[0], worst[1] = value, where

    def relu_hook(module, inputs):
        v = inputs[0].detach()
        note((v.abs().min() / v.abs().max()).item() * weight[module], names[module])

    def pool_hook(module, inputs):
        v = inputs[0].detach()
        n, c, h, w = v.shape
        k, s, p = module.kernel_size, module.stride, module.padding
        cols = torch.nn.functional.unfold(torch.nn.functional.pad(v, (p, p, p, p), value=-float("inf")), k, stride=s)
        top = cols.view(n, c, k * k, -1).topk(2, dim=2).values
        gap = (top[:, :, 0] - top[:, :, 1])[top[:, :, 0] != 0]
        if gap.numel():
            note((gap.min() / v.abs().max()).item() * weight[module], names[module])

    names, weight = {}, {}
    for name, m in net.named_modules():
        if isinstance(m, (torch.nn.ReLU, torch.nn.MaxPool2d)):
            relu = isinstance(m, torch.nn.ReLU)
            names[m] = name + (" (input)" if relu else " (window gap)")
            weight[m] = 1.0 if name.startswith("layer") else 100.0
            m.register_forward_pre_hook(relu_hook if relu else pool_hook)
    with torch.no_grad():
        net(x.double())
    return worst[0], worst[1]


def main():
    args = parse_args()
    start = time.time()
    modules = import_torch(args.device)
    if modules is None:
        return SKIP
    torch, torchvision = modules
    cuda = args.device.startswith("cuda")
    tol = args.tol if args.tol is not None else (1e-3 if cuda else 1e-4)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    where = torch.cuda.get_device_name(0) if cuda else "CPU"
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {where}; {args.arch}, "
          f"x ({args.batch}, 3, {args.size}, {args.size}), {args.num_classes} classes, seed {args.seed}")

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = make_model(torch, torchvision, args.arch, args.num_classes, gen)
    # Inputs whose training forward keeps clear of ReLU and max-pool kinks (see decision_margin).
    best = None
    for attempt in range(1, MAX_DRAWS + 1):
        candidate = torch.randn(args.batch, 3, args.size, args.size, generator=gen)
        margin, where = decision_margin(torch, model, candidate)
        if best is None or margin > best[1]:
            best = (candidate, margin, where, attempt)
        if margin >= MIN_MARGIN:
            break
    x, margin, where, attempt = best
    print(f"input: draw {attempt} of at most {MAX_DRAWS}, decision margin {margin:.2e} (at {where}; "
          f"wanted >= {MIN_MARGIN:.0e}{'' if margin >= MIN_MARGIN else ': NOT MET, gradients may differ at a kink'})")
    dy = torch.randn(args.batch, args.num_classes, generator=gen)
    last_bn = "layer4.1.bn2" if args.arch == "resnet18" else "layer4.2.bn3"
    tracked = [k for k in model.state_dict() if k.endswith("num_batches_tracked")]

    with tempfile.TemporaryDirectory(prefix="fovea-torch-") as tmp:
        folder = args.keep or tmp
        os.makedirs(folder, exist_ok=True)
        weights, inputs, out = (os.path.join(folder, f) for f in ("weights.safetensors", "input.safetensors",
                                                                  "fovea.safetensors"))
        state = model.state_dict()
        assert all(state[k].dtype == torch.int64 for k in tracked), "num_batches_tracked is not int64"
        write_safetensors(weights, state, torch)
        write_safetensors(inputs, {"x": x, "dy": dy}, torch)
        cmd = [args.exe, "--arch", args.arch, "--num-classes", str(args.num_classes), "--weights", weights,
               "--input", inputs, "--device", args.device, "--out", out]
        status, fovea_seconds = run_fovea(cmd)
        if status != 0:
            return status
        got = read_safetensors(out, torch)

    t0 = time.time()
    ref, all_stats = torch_reference(torch, model, x, dy, args.device, last_bn)
    torch_seconds = time.time() - t0

    picked = ["eval_logits", "train_logits", "dx"]
    for bn in ["bn1", last_bn]:
        picked += ["running_mean." + bn, "running_var." + bn]
    picked += ["grad." + n for n in ["conv1.weight", "bn1.weight", "layer1.0.conv1.weight", last_bn + ".bias",
                                     "fc.weight", "fc.bias"]]
    rows, failures = [], []

    def error(name, reference, scale=None):
        """max|fovea - torch| / scale (default max|torch|); None when missing or misshapen."""
        a = got.get(name)
        if a is None or tuple(a.shape) != tuple(reference.shape):
            what = "missing" if a is None else f"shape {tuple(a.shape)} vs torch {tuple(reference.shape)}"
            failures.append(f"{name}: {what}")
            return None, 0.0, 0.0
        diff = (a.double() - reference.double()).abs().max().item() if reference.numel() else 0.0
        if scale is None:
            scale = reference.double().abs().max().item() if reference.numel() else 0.0
        return (diff / scale if scale > 0 else diff), diff, scale

    for name in picked:
        rel, diff, scale = error(name, ref[name])
        if rel is None:
            rows.append((name, "-", "-", "-", "-", "MISSING"))
            continue
        ok = rel <= tol
        rows.append((name, str(tuple(ref[name].shape)), f"{scale:.3e}", f"{diff:.3e}", f"{rel:.2e}",
                     "ok" if ok else "FAIL"))
        if not ok:
            failures.append(f"{name}: {rel:.2e} > {tol:.0e}")

    # Every parameter gradient and running statistic, summarised by the worst. A batch norm's bias
    # gradient can be ~0 exactly (when a training-mode batch norm follows through active ReLUs):
    # it is scaled by the larger of its own and its weight's gradient.
    def scale_of(name, reference):
        m = reference.double().abs().max().item() if reference.numel() else 0.0
        partner = name[:-len(".bias")] + ".weight" if name.endswith(".bias") else None
        if partner in ref and ref[partner].dim() == 1:
            m = max(m, ref[partner].double().abs().max().item())
        return m

    grads = {k: v for k, v in ref.items() if k.startswith("grad.")}
    for label, refs in [(f"grad.* (all {len(grads)})", grads), (f"running_* (all {len(all_stats)})", all_stats)]:
        worst, worst_name = -1.0, ""
        for name, r in refs.items():
            rel, _, _ = error(name, r, scale_of(name, r))
            rel = float("inf") if rel is None else rel
            if rel > worst:
                worst, worst_name = rel, name
        ok = worst <= tol
        rows.append((label, f"worst {worst_name}", "", "", f"{worst:.2e}", "ok" if ok else "FAIL"))
        if not ok:
            failures.append(f"{label}: worst {worst_name} {worst:.2e} > {tol:.0e}")
    extra = sorted(set(got) - set(ref) - set(all_stats))
    if extra:
        print(f"note: fovea wrote {len(extra)} keys without a torch counterpart: {', '.join(extra[:8])}")

    print_table(("quantity", "shape", "max|torch|", "max|diff|", "rel", ""), rows)
    print(f"tolerance {tol:.0e} (max|fovea - torch| / max|torch|); fovea {fovea_seconds:.1f} s, "
          f"torch {torch_seconds:.1f} s, total {time.time() - start:.1f} s")
    return verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
