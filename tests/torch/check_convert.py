#!/usr/bin/env python3
# tests/torch/check_convert.py: scripts/convert-weights on the checkpoints users have, made here from
# torchvision ResNets with random weights (nothing is downloaded), and the fovea program reading what
# it writes:
#   - a plain torchvision state dict (.pth), and the same in float16: every tensor equal to the
#     model's in float32 (bitwise), num_batches_tracked left out, fovea.arch / fovea.width metadata;
#     `fovea features` loads it strictly (classifier weights);
#   - a MoCo v2 checkpoint (query and key encoders under module.encoder_q. / module.encoder_k., the
#     projection MLP as fc.0 / fc.2, the queue, an optimizer with a float learning rate): the query
#     encoder's backbone, no fc; `fovea features` reads it as backbone weights; with torch < 2.0 the
#     float needs --trust, which is checked to be asked for;
#   - a Lightning-style checkpoint (model.backbone. prefix, hyper-parameters beside it), a ResNet-50
#     at width 0.25, and a safetensors file with a prefix;
#   - errors: two ResNets without --prefix (exit 2, both named), --arch contradicting the layout, a
#     truncated file, a pickle that would run code (refused, the code not run), a safetensors file
#     whose offsets point past its end, a file that holds no ResNet, a missing file (exit 1, the file
#     named); no output file is left by a failure.
# Usage: check_convert.py --script scripts/convert-weights --exe path/to/fovea
# Exit status: 0 passed, 1 a failure, 77 skipped (torch or torchvision not importable, or no fovea
# program given).
import argparse
import collections
import os
import subprocess
import sys
import tempfile

from st_io import SKIP, import_torch, read_safetensors, verdict, write_safetensors  # tests/torch/st_io.py


class Evil:  # unpickling this runs a command: the converter must refuse it without --trust
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--script", required=True)
    p.add_argument("--exe", default="")
    a = p.parse_args()
    if not a.exe:
        print("SKIP: the fovea program was not built")
        return SKIP
    loaded = import_torch()
    if loaded is None:
        return SKIP
    torch, torchvision = loaded
    failures = []

    def check(ok, what):
        if not ok:
            failures.append(what)
        print(("ok    " if ok else "FAIL  ") + what)

    def convert(src, out, *flags):
        r = subprocess.run([sys.executable, a.script, src, out, *flags], capture_output=True, text=True, timeout=300)
        sys.stdout.write(r.stdout + r.stderr)
        return r.returncode, r.stdout + r.stderr

    def fovea(*args):
        r = subprocess.run([a.exe, *args], capture_output=True, text=True, timeout=300)
        return r.returncode, r.stdout + r.stderr

    torch.manual_seed(0)
    r18 = torchvision.models.resnet18()
    sd = r18.state_dict()
    want = {k: v.float() for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    with tempfile.TemporaryDirectory(prefix="fovea_convert_") as tmp:
        path = lambda name: os.path.join(tmp, name)  # noqa: E731

        # A plain torchvision state dict, and in float16.
        torch.save(sd, path("plain.pth"))
        code, _ = convert(path("plain.pth"), path("plain.safetensors"))
        got, meta = read_safetensors(path("plain.safetensors"), torch, with_metadata=True)
        check(code == 0 and set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want),
              "plain state dict: every tensor, bitwise, num_batches_tracked left out")
        check(meta.get("fovea.arch") == "resnet18" and meta.get("fovea.width") == "1" and
              meta.get("fovea.prefix") == "", f"plain state dict: metadata {meta}")
        code, out = fovea("features", "--arch", "resnet18", "--weights", path("plain.safetensors"), "--synthetic",
                          "4", "--size", "32", "--layers", "conv1,fc", "--device", "cpu", "--out", path("feat18"))
        check(code == 0 and "102 tensors" in out, f"fovea features loads the 1000-class weights strictly (exit {code}):\n{out}")
        torch.save({k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, path("half.pth"))
        code, _ = convert(path("half.pth"), path("half.safetensors"))
        got = read_safetensors(path("half.safetensors"), torch)
        check(code == 0 and all(torch.equal(got[k], want[k].half().float()) for k in want), "float16 -> float32")

        # MoCo v2: both encoders, the MLP head, the queue; an optimizer with a float (torch < 2.0's
        # safe loader refuses floats: then --trust is needed and the message says so).
        moco = collections.OrderedDict()
        for k, v in sd.items():
            if k.startswith("fc."):
                continue
            moco["module.encoder_q." + k] = v
            moco["module.encoder_k." + k] = v.clone() + (1 if v.is_floating_point() else 0)
        moco["module.encoder_q.fc.0.weight"], moco["module.encoder_q.fc.0.bias"] = torch.randn(512, 512), torch.zeros(512)
        moco["module.encoder_q.fc.2.weight"], moco["module.encoder_q.fc.2.bias"] = torch.randn(128, 512), torch.zeros(128)
        moco["module.queue"] = torch.randn(128, 64)
        torch.save({"epoch": 200, "arch": "resnet18", "state_dict": moco,
                    "optimizer": {"param_groups": [{"lr": 0.03, "momentum": 0.9}]}}, path("moco.pth.tar"))
        code, out = convert(path("moco.pth.tar"), path("moco.safetensors"))
        if code != 0:
            check(code == 1 and "--trust" in out and not os.path.exists(path("moco.safetensors")),
                  f"MoCo checkpoint refused by this torch's safe loader: the message asks for --trust ({out})")
            code, out = convert(path("moco.pth.tar"), path("moco.safetensors"), "--trust")
        got, meta = read_safetensors(path("moco.safetensors"), torch, with_metadata=True)
        backbone = {k: v for k, v in want.items() if not k.startswith("fc.")}
        check(code == 0 and set(got) == set(backbone) and all(torch.equal(got[k], backbone[k]) for k in backbone),
              "MoCo v2: the query encoder's backbone, bitwise, no fc")
        check(meta.get("fovea.prefix") == "module.encoder_q.", f"MoCo v2: prefix {meta}")
        code, out = fovea("features", "--arch", "resnet18", "--weights", path("moco.safetensors"), "--synthetic",
                          "4", "--size", "32", "--layers", "conv1,layer4.1.bn2", "--device", "cpu", "--out",
                          path("feat"))
        check(code == 0 and "no classifier" in out, f"fovea features reads the MoCo backbone (exit {code}):\n{out}")
        code, out = convert(path("moco.pth.tar"), path("moco_k.safetensors"), "--trust", "--prefix",
                            "module.encoder_k.")
        got = read_safetensors(path("moco_k.safetensors"), torch)
        check(code == 0 and torch.equal(got["conv1.weight"], backbone["conv1.weight"] + 1), "--prefix chooses the key encoder")

        # Lightning-style, ResNet-50 at width 0.25 (torchvision's width_per_group scales the 3x3 convs
        # only, so build it from torchvision's Bottleneck with narrower planes by hand: scale every
        # tensor of a ResNet-50 down to a quarter of the channels).
        r50 = torchvision.models.resnet50().state_dict()
        quarter = {}
        for k, v in r50.items():
            if k.endswith("num_batches_tracked") or k.startswith("fc."):
                continue
            shape = list(v.shape)
            shape[0] = max(1, shape[0] // 4) if shape else shape
            if len(shape) == 4 and k != "conv1.weight":
                shape[1] = shape[1] // 4
            quarter["model.backbone." + k] = torch.randn(shape)
        torch.save({"state_dict": quarter, "hyper_parameters": {"name": "simclr", "epochs": 100}}, path("light.ckpt"))
        code, out = convert(path("light.ckpt"), path("light.safetensors"), "--arch", "resnet50")
        got, meta = read_safetensors(path("light.safetensors"), torch, with_metadata=True)
        check(code == 0 and meta.get("fovea.arch") == "resnet50" and meta.get("fovea.width") == "0.25" and
              meta.get("fovea.prefix") == "model.backbone." and len(got) == len(quarter),
              f"Lightning-style ResNet-50 at width 0.25: {meta}, {len(got)} tensors")
        code, out = fovea("features", "--arch", "resnet50", "--width", "0.25", "--weights", path("light.safetensors"),
                          "--synthetic", "3", "--size", "32", "--layers", "conv1", "--device", "cpu", "--out",
                          path("feat50"))
        check(code == 0, f"fovea features reads the width-0.25 ResNet-50 (exit {code}):\n{out}")

        # safetensors with a prefix.
        write_safetensors(path("pre.safetensors"), {"encoder." + k: v for k, v in want.items()}, torch)
        code, _ = convert(path("pre.safetensors"), path("pre_out.safetensors"))
        got = read_safetensors(path("pre_out.safetensors"), torch)
        check(code == 0 and all(torch.equal(got[k], want[k]) for k in want), "safetensors input with a prefix")

        # Errors.
        two = {"a." + k: v for k, v in sd.items()}
        two.update({"b." + k: v for k, v in sd.items()})
        torch.save(two, path("two.pth"))
        code, out = convert(path("two.pth"), path("two.safetensors"))
        check(code == 2 and "'a.'" in out and "'b.'" in out and "--prefix" in out, f"two ResNets: exit {code}: {out}")
        code, out = convert(path("plain.pth"), path("x.safetensors"), "--arch", "resnet50")
        check(code == 1 and "resnet18" in out, f"--arch contradicting the layout: exit {code}: {out}")
        data = open(path("plain.pth"), "rb").read()
        open(path("trunc.pth"), "wb").write(data[: len(data) // 3])
        code, out = convert(path("trunc.pth"), path("x.safetensors"))
        check(code == 1 and "trunc.pth" in out, f"truncated file: exit {code}: {out}")
        marker = path("pwned")
        torch.save({"state_dict": sd, "payload": Evil(marker)}, path("evil.pth"))
        code, out = convert(path("evil.pth"), path("x.safetensors"))
        check(code == 1 and "--trust" in out and not os.path.exists(marker), f"a pickle that runs code: exit {code}: {out}")
        with open(path("hostile.safetensors"), "wb") as f:  # offsets past the end of the file
            header = b'{"conv1.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,1000000]}}'
            f.write(len(header).to_bytes(8, "little") + header + b"\0" * 16)
        code, out = convert(path("hostile.safetensors"), path("x.safetensors"))
        check(code == 1 and "hostile.safetensors" in out and "offsets" in out, f"hostile safetensors: exit {code}: {out}")
        torch.save({"features.0.weight": torch.randn(8, 3, 3, 3)}, path("vgg.pth"))
        code, out = convert(path("vgg.pth"), path("x.safetensors"))
        check(code == 1 and "no ResNet" in out, f"no ResNet in the file: exit {code}: {out}")
        code, out = convert(path("absent.pth"), path("x.safetensors"))
        check(code == 1 and "absent.pth" in out, f"missing file: exit {code}: {out}")
        check(not os.path.exists(path("x.safetensors")) and
              not any(n.startswith(".convert-") for n in os.listdir(tmp)), "a failed conversion leaves no file")
    return verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
