#!/usr/bin/env python3
# tests/torch/check_augment.py: cross-checks fovea's augmentation ops against torchvision's
# functional transforms on tensors, sample by sample, with the same parameters: resized_crop
# (bilinear, no antialias) and the flips; rotate (bilinear, zero fill); adjust_brightness /
# contrast / saturation / hue in each sample's ColorJitter order; rgb_to_grayscale; gaussian_blur;
# solarize; normalize; and the whole pipeline (augment_images) as their composition. fovea's own
# tests check these ops against formulas written in C++; this checks the formulas themselves
# against the library users know (the direction of a rotation, the centre it turns about, which
# mean contrast blends with, the HSV round trip of hue, the reflect padding of the blur).
#
# Usage: check_augment.py --device cpu|cuda --exe path/to/fovea_augment_ops [--seed S] [--keep DIR]
# Two batches: 24 samples 61 x 53 -> 48 px with random crop boxes (the whole image, 1 x 1 and
# 1-row boxes among them), flips, jitter (random subsets, orders and factors, hue +-0.5 included),
# grayscale, blurs (1 to 95 taps, sigma 0.1 to 20) and solarize, on images with grey, black,
# white and tied-channel pixels; and 12 square 40 x 40 samples, flipped and rotated by angles in
# [-180, 180] (90 and -90 included). Rotation: fovea resamples the crop once where torchvision
# rotates the resized image with grid_sample, which blends border pixels with the zero fill;
# compared where torchvision's rotated all-ones image is 1 (every tap inside), and fovea must be
# 0 where it is 0.
# Exit status: 0 all within tolerance, 1 a mismatch or an error, 77 skipped (torch or torchvision
# not importable; for --device cuda: no GPU for torch or fovea).
import argparse
import math
import os
import sys
import tempfile

from st_io import SKIP, import_torch, print_table, read_safetensors, run_fovea, verdict, write_safetensors  # tests/torch/st_io.py

COLUMNS = [  # tests/torch/augment_ops.cpp kColumns
    "crop_top", "crop_left", "crop_height", "crop_width", "hflip", "vflip", "rotation_degrees",
    "jitter", "jitter_ops", "order0", "order1", "order2", "order3", "brightness", "contrast",
    "saturation", "hue", "grayscale", "blur", "blur_kernel", "blur_sigma", "solarize",
    "solarize_threshold"]
DR_MEAN, DR_STD = [0.3203, 0.2244, 0.1609], [0.2622, 0.1833, 0.1318]  # fovea's kDrStats

# Largest |fovea - torchvision| allowed per output (values in [0, 1]; normalised ones up to ~8x).
TOL = {"geometry": 1e-5, "color_jitter": 2e-5, "grayscale": 1e-6, "gaussian_blur": 1e-5,
       "solarize": 0.0, "normalize": 1e-6, "pipeline": 2e-4, "rotation": 2e-4, "rotation_zero": 0.0}


def parse_args():
    p = argparse.ArgumentParser(description="cross-check fovea's augmentation ops against torchvision")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--exe", required=True, help="path of fovea_augment_ops")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", default=None, help="write the safetensors files to this folder and keep them")
    return p.parse_args()


def images(torch, n, h, w, gen):
    """Smooth colour gradients plus noise, with grey (r = g = b), black, white and two-channel-tie
    pixels, all in [0, 1]."""
    yy = torch.linspace(0, 1, h).view(1, 1, h, 1)
    xx = torch.linspace(0, 1, w).view(1, 1, 1, w)
    phase = torch.rand(n, 3, 1, 1, generator=gen) * 6.28
    x = 0.5 + 0.35 * torch.sin(phase + 5 * xx + 3 * yy * (1 + torch.arange(3).view(1, 3, 1, 1)))
    x = (x + 0.1 * torch.randn(n, 3, h, w, generator=gen)).clamp(0, 1)
    pick = torch.rand(n, 1, h, w, generator=gen)
    grey = x.mean(dim=1, keepdim=True).expand(n, 3, h, w)
    x = torch.where(pick < 0.08, grey, x)
    x = torch.where((pick >= 0.08) & (pick < 0.11), torch.zeros_like(x), x)
    x = torch.where((pick >= 0.11) & (pick < 0.14), torch.ones_like(x), x)
    tie = (pick >= 0.14) & (pick < 0.2)
    x[:, 1:2] = torch.where(tie, x[:, 0:1], x[:, 1:2])  # r == g: hue's max/min ties
    return x.contiguous()


def draw_params(torch, n, h, w, gen, rotate):
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(1, generator=gen).item()
    bit = lambda p: 1 if torch.rand(1, generator=gen).item() < p else 0
    rows = []
    for i in range(n):
        if rotate:
            top, left, ch, cw = 0, 0, h, w
        elif i == 0:
            top, left, ch, cw = 0, 0, h, w
        elif i == 1:
            top, left, ch, cw = 7, 11, 1, 1
        elif i == 2:
            top, left, ch, cw = h - 1, 0, 1, w
        else:
            ch = int(torch.randint(1, h + 1, (1,), generator=gen))
            cw = int(torch.randint(1, w + 1, (1,), generator=gen))
            top = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
        angle = 0.0
        if rotate:
            angle = [90.0, -90.0, 180.0][i] if i < 3 else u(-180, 180)
        order = torch.randperm(4, generator=gen).tolist()
        hue = [0.5, -0.5, 0.0][i % 3] if i < 6 else u(-0.5, 0.5)
        ops = int(torch.randint(1, 16, (1,), generator=gen)) if i % 4 else 15
        kernel = [31 if rotate else 95, 23, 1][i] if i < 3 else 2 * int(torch.randint(1, 12, (1,), generator=gen)) + 1
        sigma = 20.0 if i == 0 else u(0.1, 2.0)
        row = {
            "crop_top": top, "crop_left": left, "crop_height": ch, "crop_width": cw,
            "hflip": bit(0.5), "vflip": bit(0.5), "rotation_degrees": angle,
            "jitter": 1 if i < 4 else bit(0.8), "jitter_ops": ops,
            "order0": order[0], "order1": order[1], "order2": order[2], "order3": order[3],
            "brightness": u(0.2, 1.8), "contrast": u(0.2, 1.8), "saturation": u(0.0, 2.0), "hue": hue,
            "grayscale": bit(0.3), "blur": 1 if i < 3 else bit(0.6), "blur_kernel": kernel,
            "blur_sigma": sigma, "solarize": bit(0.4), "solarize_threshold": u(0.05, 0.95)}
        rows.append(row)
    table = torch.tensor([[float(r[c]) for c in COLUMNS] for r in rows], dtype=torch.float32)
    # the float32 values fovea receives are the ones the reference must use
    return [dict(zip(COLUMNS, t.tolist())) for t in table], table


# ---- torchvision's side, one sample (3, H, W) at a time ---------------------------------------
def geometry(F, IM, x, p, size):
    y = F.resized_crop(x, int(p["crop_top"]), int(p["crop_left"]), int(p["crop_height"]), int(p["crop_width"]),
                       [size, size], interpolation=IM.BILINEAR, antialias=False)
    if p["hflip"]:
        y = F.hflip(y)
    if p["vflip"]:
        y = F.vflip(y)
    return y


def color_jitter(F, x, p):
    if not p["jitter"]:
        return x
    ops = int(p["jitter_ops"])
    for k in range(4):
        op = int(p[f"order{k}"])
        if not (ops >> op) & 1:
            continue
        if op == 0:
            x = F.adjust_brightness(x, p["brightness"])
        elif op == 1:
            x = F.adjust_contrast(x, p["contrast"])
        elif op == 2:
            x = F.adjust_saturation(x, p["saturation"])
        else:
            x = F.adjust_hue(x, p["hue"])
    return x


def grayscale(F, x, p):
    return F.rgb_to_grayscale(x, num_output_channels=3) if p["grayscale"] else x


def blur(F, x, p):
    if not p["blur"]:
        return x
    k = int(p["blur_kernel"])
    return F.gaussian_blur(x, [k, k], [p["blur_sigma"], p["blur_sigma"]])


def solarize(F, x, p):
    return F.solarize(x, p["solarize_threshold"]) if p["solarize"] else x


def compare(name, got, want, failures, rows, mask=None):
    diff = (got - want).abs()
    if mask is not None:
        diff = diff[mask]
    worst = diff.max().item() if diff.numel() else 0.0
    ok = worst <= TOL[name] and not math.isnan(worst) and got.shape == want.shape
    rows.append([name, "ok" if ok else "FAIL", f"{diff.numel()}", f"{worst:.3g}", f"{TOL[name]:.0e}"])
    if not ok:
        failures.append(f"{name}: max |fovea - torchvision| {worst:.3g} > {TOL[name]:g} (shapes "
                        f"{tuple(got.shape)} / {tuple(want.shape)})")


def run_batch(torch, F, IM, args, folder, tag, x, params, table, size, failures, rows):
    inputs = os.path.join(folder, f"{tag}_in.safetensors")
    out = os.path.join(folder, f"{tag}_out.safetensors")
    stats = torch.tensor([DR_MEAN, DR_STD], dtype=torch.float32)
    write_safetensors(inputs, {"x": x, "params": table, "stats": stats,
                               "size": torch.tensor([float(size)])}, torch)
    status, _ = run_fovea([args.exe, "--input", inputs, "--device", args.device, "--out", out])
    if status != 0:
        return status
    got = read_safetensors(out, torch)
    dev = torch.device(args.device)
    x = x.to(dev)
    ref = {k: [] for k in ["geometry", "color_jitter", "grayscale", "gaussian_blur", "solarize", "normalize",
                           "pipeline"]}
    for i, p in enumerate(params):
        xi = x[i]
        g = geometry(F, IM, xi, p, size)
        if p["rotation_degrees"] != 0.0:
            g = F.rotate(g, p["rotation_degrees"], interpolation=IM.BILINEAR)
        ref["geometry"].append(g)
        ref["color_jitter"].append(color_jitter(F, xi, p))
        ref["grayscale"].append(grayscale(F, xi, p))
        ref["gaussian_blur"].append(blur(F, xi, p))
        ref["solarize"].append(solarize(F, xi, p))
        ref["normalize"].append(F.normalize(xi, DR_MEAN, DR_STD))
        ref["pipeline"].append(F.normalize(solarize(F, blur(F, grayscale(F, color_jitter(F, g, p), p), p), p),
                                           DR_MEAN, DR_STD))
    ref = {k: torch.stack(v).cpu() for k, v in ref.items()}
    if tag == "rotation":
        ones = torch.ones(len(params), 3, size, size, device=dev)
        inside = torch.stack([F.rotate(geometry(F, IM, o, p, size), p["rotation_degrees"],
                                       interpolation=IM.BILINEAR) for o, p in zip(ones, params)]).cpu()
        full, none = inside >= 1.0 - 1e-6, inside == 0.0
        compare("rotation", got["geometry"], ref["geometry"], failures, rows, full)
        compare("rotation_zero", got["geometry"], torch.zeros_like(ref["geometry"]), failures, rows, none)
        if full.sum().item() < 0.4 * full.numel() or none.sum().item() == 0:
            failures.append("rotation: too few pixels fully inside or fully outside to compare")
        return 0
    for name in ref:
        compare(name, got[name], ref[name], failures, rows)
    return 0


def main():
    args = parse_args()
    imported = import_torch(args.device)
    if imported is None:
        return SKIP
    torch, torchvision = imported
    import torchvision.transforms.functional as F
    from torchvision.transforms import InterpolationMode as IM
    gen = torch.Generator().manual_seed(args.seed)
    failures, rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or tmp
        os.makedirs(folder, exist_ok=True)
        batches = [("main", 24, 61, 53, 48, False), ("rotation", 12, 40, 40, 40, True)]
        for tag, n, h, w, size, rotate in batches:
            x = images(torch, n, h, w, gen)
            params, table = draw_params(torch, n, h, w, gen, rotate)
            status = run_batch(torch, F, IM, args, folder, tag, x, params, table, size, failures, rows)
            if status != 0:
                return status
    print(f"fovea vs torchvision {torchvision.__version__} augmentation ops on {args.device}:")
    print_table(["output", "", "values", "max |diff|", "tolerance"], rows)
    return verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
