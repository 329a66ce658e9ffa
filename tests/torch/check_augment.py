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
# Third, the parameter draws: 20,000 views of the SimCLR and MoCo v2 presets for 300 x 400 images
# (`fovea_augment_ops --draw`) against as many from torchvision's own samplers with the recipes'
# settings (RandomResizedCrop.get_params, ColorJitter.get_params, the RandomApply / flip / grayscale
# coins, GaussianBlur's sigma): two-sample Kolmogorov-Smirnov distances of the crop's area fraction,
# log aspect ratio and offsets, the jitter factors and the blur sigma (limit: the 0.001 level), the
# frequencies of every coin and of each op at each place of the jitter order (|z| < 4.5), and the
# blur kernel (10 % of the side, made odd).
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


# ---- the parameter draws -------------------------------------------------------------------------
DRAWS, DRAW_H, DRAW_W, DRAW_S = 20000, 300, 400, 224
RECIPES = {  # torchvision's arguments of the two recipes (fovea's data::simclr / data::moco_v2)
    "simclr": {"scale": (0.08, 1.0), "jitter": (0.8, 0.8, 0.8, 0.2)},
    "moco_v2": {"scale": (0.2, 1.0), "jitter": (0.4, 0.4, 0.4, 0.1)},
}


def torchvision_draws(torch, T, recipe, n, seed):
    """n parameter rows (dicts of COLUMNS' names) drawn with torchvision's samplers, in the order
    its Compose would draw them: crop, flip, RandomApply(jitter), grayscale, RandomApply(blur)."""
    torch.manual_seed(seed)
    img = torch.empty(3, DRAW_H, DRAW_W)
    b, c, s, h = recipe["jitter"]
    ranges = ([max(0.0, 1 - b), 1 + b], [max(0.0, 1 - c), 1 + c], [max(0.0, 1 - s), 1 + s], [-h, h])
    rows = []
    for _ in range(n):
        top, left, ch, cw = T.RandomResizedCrop.get_params(img, list(recipe["scale"]), [3 / 4, 4 / 3])
        row = {"crop_top": top, "crop_left": left, "crop_height": ch, "crop_width": cw,
               "hflip": int(torch.rand(1).item() < 0.5), "jitter": int(torch.rand(1).item() < 0.8)}
        if row["jitter"]:
            order, bf, cf, sf, hf = T.ColorJitter.get_params(*ranges)
            row.update({f"order{k}": int(order[k]) for k in range(4)})
            row.update({"brightness": bf, "contrast": cf, "saturation": sf, "hue": hf})
        row["grayscale"] = int(torch.rand(1).item() < 0.2)
        row["blur"] = int(torch.rand(1).item() < 0.5)
        if row["blur"]:
            row["blur_sigma"] = T.GaussianBlur.get_params(0.1, 2.0)
        rows.append(row)
    return rows


def ks_distance(a, b):
    """The two-sample Kolmogorov-Smirnov statistic sup |F_a - F_b| (ties handled)."""
    a, b = sorted(a), sorted(b)
    i = j = 0
    d = 0.0
    while i < len(a) and j < len(b):
        x = min(a[i], b[j])
        while i < len(a) and a[i] <= x:
            i += 1
        while j < len(b) and b[j] <= x:
            j += 1
        d = max(d, abs(i / len(a) - j / len(b)))
    return d


def compare_draws(name, fovea_rows, tv_rows, failures, rows):
    def ks(what, f, t):
        d = ks_distance(f, t)
        limit = 1.95 * math.sqrt((len(f) + len(t)) / (len(f) * len(t)))  # the 0.001 level
        ok = d <= limit
        rows.append([f"{name} {what}", "ok" if ok else "FAIL", f"{len(f)}/{len(t)}", f"KS {d:.4f}",
                     f"{limit:.4f}"])
        if not ok:
            failures.append(f"{name} {what}: KS distance {d:.4f} > {limit:.4f}")

    def freq(what, f, t):
        pf, pt = sum(f) / len(f), sum(t) / len(t)
        pooled = (sum(f) + sum(t)) / (len(f) + len(t))
        se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / len(f) + 1 / len(t)))
        z = (pf - pt) / se
        ok = abs(z) < 4.5
        rows.append([f"{name} {what}", "ok" if ok else "FAIL", f"{pf:.4f}/{pt:.4f}", f"z {z:+.2f}", "4.5"])
        if not ok:
            failures.append(f"{name} {what}: frequency {pf:.4f} (fovea) vs {pt:.4f} (torchvision), z {z:+.2f}")

    area = lambda r: r["crop_height"] * r["crop_width"] / (DRAW_H * DRAW_W)
    ratio = lambda r: math.log(r["crop_width"] / r["crop_height"])
    ks("crop area fraction", [area(r) for r in fovea_rows], [area(r) for r in tv_rows])
    ks("crop log aspect ratio", [ratio(r) for r in fovea_rows], [ratio(r) for r in tv_rows])
    for pos, side, size in (("crop_top", "crop_height", DRAW_H), ("crop_left", "crop_width", DRAW_W)):
        rel = lambda rs: [r[pos] / (size - r[side]) for r in rs if r[side] < size]
        ks(f"{pos} / room", rel(fovea_rows), rel(tv_rows))
    for coin in ("hflip", "jitter", "grayscale", "blur"):
        freq(coin, [r[coin] for r in fovea_rows], [r[coin] for r in tv_rows])
    jf, jt = [r for r in fovea_rows if r["jitter"]], [r for r in tv_rows if r["jitter"]]
    for factor in ("brightness", "contrast", "saturation", "hue"):
        ks(factor, [r[factor] for r in jf], [r[factor] for r in jt])
    for k in range(4):
        for op in range(4):
            freq(f"jitter order[{k}] = {op}", [int(r[f"order{k}"] == op) for r in jf],
                 [int(r[f"order{k}"] == op) for r in jt])
    bf, bt = [r for r in fovea_rows if r["blur"]], [r for r in tv_rows if r["blur"]]
    ks("blur sigma", [r["blur_sigma"] for r in bf], [r["blur_sigma"] for r in bt])
    kernel = int(0.1 * DRAW_S) + (1 - int(0.1 * DRAW_S) % 2)
    bad = sorted({int(r["blur_kernel"]) for r in bf} - {kernel})
    rows.append([f"{name} blur kernel", "ok" if not bad else "FAIL", f"{len(bf)}", f"{kernel} taps", "-"])
    if bad:
        failures.append(f"{name} blur kernel: fovea drew {bad}, the recipe's is {kernel}")
    others = [c for c in ("vflip", "rotation_degrees", "solarize") if any(r[c] for r in fovea_rows)]
    if others:
        failures.append(f"{name}: fovea drew {others}, which the recipe does not use")


def run_draws(torch, T, args, folder, failures, rows):
    for k, (name, recipe) in enumerate(RECIPES.items()):
        out = os.path.join(folder, f"draws_{name}.safetensors")
        status, _ = run_fovea([args.exe, "--draw", name, "--count", str(DRAWS), "--height", str(DRAW_H),
                               "--width", str(DRAW_W), "--size", str(DRAW_S), "--seed", str(args.seed + 1 + k),
                               "--out", out])
        if status != 0:
            return status
        table = read_safetensors(out, torch)["params"]
        fovea_rows = [dict(zip(COLUMNS, t.tolist())) for t in table]
        compare_draws(name, fovea_rows, torchvision_draws(torch, T, recipe, DRAWS, args.seed + 1 + k), failures, rows)
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
        if args.device == "cpu":  # the draws run on the host: once is enough
            import torchvision.transforms as T
            status = run_draws(torch, T, args, folder, failures, rows)
            if status != 0:
                return status
    print(f"fovea vs torchvision {torchvision.__version__} augmentation ops on {args.device}:")
    print_table(["output", "", "values", "max |diff|", "tolerance"], rows)
    return verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
