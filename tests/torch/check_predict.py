#!/usr/bin/env python3
# tests/torch/check_predict.py: `fovea predict` against torchvision: the real command-line program,
# given a torchvision state dict (safetensors, torchvision names, num_batches_tracked as I64) and
# PNG files already at the model's input size, must give the logits and softmax probabilities that
# torchvision's model gives in eval mode on the same decoded pixels: x = (u8 / 255 - mean) / std.
#
# Usage: check_predict.py --exe path/to/fovea [--arch resnet18,resnet50] [--size S] [--images N]
#          [--num-classes K] [--seed S] [--tol T] [--keep DIR]
# For each architecture: random weights (nothing is downloaded) with perturbed batch norms and fc
# scaled so that max|logit| is about 4 (probabilities away from 0 and 1), N smooth random RGB PNGs
# of S x S written here with zlib, and three runs of `fovea predict`: explicit --mean/--std, no
# normalization flag (the default, ImageNet's statistics) and --normalization dr. Compared per run:
# max|logit_fovea - logit_torch| / max|logit_torch| and max|p_fovea - p_torch| (probabilities are
# <= 1) against the tolerance (default 1e-4), the predicted class, and the mean / std the JSON
# reports against the ones torch used.
# Exit status: 0 all within tolerance, 1 a mismatch or an error, 77 skipped (torch or torchvision not
# importable, or no fovea program given).
import argparse
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
import zlib

from st_io import SKIP, import_torch, print_table, verdict, write_safetensors  # tests/torch/st_io.py, next to this script

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])  # torchvision's reference scripts
DR = ([0.3203, 0.2244, 0.1609], [0.2622, 0.1833, 0.1318])   # tools/fovea/main.cpp, --normalization dr
CUSTOM = ([0.3, 0.5, 0.2], [0.25, 0.15, 0.3])


def parse_args():
    p = argparse.ArgumentParser(description="fovea predict vs torchvision")
    p.add_argument("--exe", default="", help="path of the fovea program (empty: skip)")
    p.add_argument("--arch", default="resnet18,resnet50", help="comma-separated: resnet18, resnet50")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--images", type=int, default=3)
    p.add_argument("--num-classes", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--keep", default=None, help="write the files to this folder and keep them")
    return p.parse_args()


def png_bytes(width, height, rgb_rows):
    """An 8-bit RGB PNG (no interlace, filter 0 on every row) of rows of (r, g, b) byte tuples."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(v for px in row for v in px) for row in rgb_rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def smooth_image(rng, size):
    """Rows of (r, g, b) bytes: per channel a sum of two random plane waves and a ramp, with a little
    noise, covering most of 0..255."""
    waves = [[(rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3), rng.uniform(0, 2 * math.pi), rng.uniform(0.1, 0.22))
              for _ in range(2)] for _ in range(3)]
    ramps = [(rng.uniform(-1, 1), rng.uniform(-1, 1)) for _ in range(3)]
    rows = []
    for y in range(size):
        row = []
        for x in range(size):
            px = []
            for c in range(3):
                v = 0.5 + sum(a * math.sin(fx * x + fy * y + ph) for fx, fy, ph, a in waves[c])
                v += 0.15 * (ramps[c][0] * (x / size - 0.5) + ramps[c][1] * (y / size - 0.5))
                v += rng.uniform(-0.03, 0.03)
                px.append(min(255, max(0, round(v * 255))))
            row.append(tuple(px))
        rows.append(row)
    return rows


def make_model(torch, torchvision, arch, num_classes, gen):
    """torchvision's model with random weights, every batch norm perturbed (gamma ~ U(0.5, 1.5),
    beta = gamma * U(-0.2, 0.2), running mean ~ N(0, 0.2), running var ~ U(0.5, 2)), in eval mode."""
    model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.copy_(m.weight * torch.empty_like(m.bias).uniform_(-0.2, 0.2, generator=gen))
                m.running_mean.normal_(0.0, 0.2, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
                m.num_batches_tracked.fill_(7)
    return model.eval()


def scale_head(torch, model, x, target=4.0):
    """Scales fc so that max|logit| over x is `target`: a random ResNet-50's logits reach the
    hundreds, where the softmax saturates to 0 and 1. (Random networks map all images to similar
    features, so the logits of different images differ by 1-5 % of their size: enough to expose a
    wrong mean or std, not enough to change the predicted class; centring them would turn rounding
    into cancellation error.)"""
    with torch.no_grad():
        factor = target / model(x).abs().max().item()
        model.fc.weight.mul_(factor)
        model.fc.bias.mul_(factor)


def main():
    args = parse_args()
    start = time.time()
    modules = import_torch()
    if modules is None:
        return SKIP
    torch, torchvision = modules
    if not args.exe:
        print("SKIP: no fovea program (the build has no fovea_cli target: CLI11/nlohmann-json missing or examples off)")
        return SKIP
    archs = [a for a in args.arch.split(",") if a]
    for a in archs:
        if a not in ("resnet18", "resnet50"):
            print(f"FAILED: unknown --arch {a}")
            return 1
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, CPU; {', '.join(archs)}, "
          f"{args.images} images of {args.size}x{args.size}, {args.num_classes} classes, seed {args.seed}")

    rng = random.Random(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    failures, rows = [], []
    with tempfile.TemporaryDirectory(prefix="fovea-predict-") as tmp:
        folder = args.keep or tmp
        os.makedirs(folder, exist_ok=True)
        images, pixels = [], []
        for i in range(args.images):
            data = smooth_image(rng, args.size)
            path = os.path.join(folder, f"image{i}.png")
            with open(path, "wb") as f:
                f.write(png_bytes(args.size, args.size, data))
            images.append(path)
            # (3, S, S) u8 values, exactly what a PNG decoder returns
            flat = torch.tensor([[px[c] for row in data for px in row] for c in range(3)], dtype=torch.float32)
            pixels.append(flat.view(3, args.size, args.size))
        u8 = torch.stack(pixels)  # (N, 3, S, S)

        for arch in archs:
            model = make_model(torch, torchvision, arch, args.num_classes, gen)
            scale_head(torch, model, (u8 / 255.0 - torch.tensor(IMAGENET[0]).view(1, 3, 1, 1)) /
                       torch.tensor(IMAGENET[1]).view(1, 3, 1, 1))
            weights = os.path.join(folder, f"{arch}.safetensors")
            write_safetensors(weights, model.state_dict(), torch)
            for label, slug, flags, (mean, std) in (
                    ("--mean/--std", "custom",
                     ["--mean", ",".join(map(str, CUSTOM[0])), "--std", ",".join(map(str, CUSTOM[1]))], CUSTOM),
                    ("default", "default", [], IMAGENET),
                    ("--normalization dr", "dr", ["--normalization", "dr"], DR)):
                out = os.path.join(folder, f"{arch}-{slug}.json")
                cmd = [args.exe, "predict", "--arch", arch, "--weights", weights, "--num-classes",
                       str(args.num_classes), "--size", str(args.size), "--out", out, *flags]
                for path in images:
                    cmd += ["--image", path]
                t0 = time.time()
                try:
                    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
                except (OSError, subprocess.TimeoutExpired) as e:
                    print(f"FAILED: running {' '.join(cmd)}: {e}")
                    return 1
                seconds = time.time() - t0
                if run.returncode != 0:
                    sys.stdout.write(run.stdout + run.stderr)
                    failures.append(f"{arch} {label}: fovea predict exited {run.returncode}")
                    continue
                with open(out) as f:
                    result = json.load(f)

                x = (u8 / 255.0 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
                with torch.no_grad():
                    logits = model(x)
                probs = torch.softmax(logits, dim=1)
                got = result.get("images", [])
                if len(got) != len(images) or any(g.get("image") != p for g, p in zip(got, images)):
                    failures.append(f"{arch} {label}: the JSON lists {len(got)} images, not the {len(images)} "
                                    "given, in order")
                    continue
                f_logits = torch.tensor([g["logits"] for g in got], dtype=torch.float64)
                f_probs = torch.tensor([g["probabilities"] for g in got], dtype=torch.float64)
                if tuple(f_logits.shape) != tuple(logits.shape) or tuple(f_probs.shape) != tuple(probs.shape):
                    failures.append(f"{arch} {label}: logits {tuple(f_logits.shape)}, torch {tuple(logits.shape)}")
                    continue
                scale = logits.abs().max().item()
                rel = (f_logits - logits.double()).abs().max().item() / scale
                p_err = (f_probs - probs.double()).abs().max().item()
                top = logits.argmax(1).tolist()
                predicted = [g["prediction"] for g in got]
                stats_ok = all(abs(a - b) <= 1e-6 for a, b in zip(result.get("mean", []) + result.get("std", []),
                                                                   mean + std)) and len(result.get("mean", [])) == 3
                ok = rel <= args.tol and p_err <= args.tol and predicted == top and stats_ok
                rows.append((arch, label, f"{scale:.3e}", f"{rel:.1e}", f"{p_err:.1e}",
                             f"{predicted}" + ("" if predicted == top else f" vs {top}"), f"{seconds:.1f} s",
                             "ok" if ok else "FAIL"))
                if rel > args.tol:
                    failures.append(f"{arch} {label}: logits {rel:.1e} > {args.tol:.0e}")
                if p_err > args.tol:
                    failures.append(f"{arch} {label}: probabilities {p_err:.1e} > {args.tol:.0e}")
                if predicted != top:
                    failures.append(f"{arch} {label}: predictions {predicted}, torch {top}")
                if not stats_ok:
                    failures.append(f"{arch} {label}: JSON mean/std {result.get('mean')}/{result.get('std')}, "
                                    f"expected {mean}/{std}")

    head = ("arch", "normalization", "max|logit|", "logit rel", "prob abs", "prediction", "fovea", "")
    print_table(head, rows)
    print(f"tolerance {args.tol:.0e} (logits: max|fovea - torch| / max|torch|; probabilities: max|fovea - torch|); "
          f"total {time.time() - start:.1f} s")
    return verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
