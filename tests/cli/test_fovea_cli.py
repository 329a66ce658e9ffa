#!/usr/bin/env python3
"""tests/cli/test_fovea_cli.py: command-line tests of the `fovea` program, one case per CTest test.

Usage: test_fovea_cli.py <path to fovea> <case>   (cases: see CASES below)
Input images are PNGs written here with zlib; nothing else is needed but the program.
"""
import csv
import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
import xml.etree.ElementTree as ElementTree

FOVEA = ""


def run(*args, expect=None):
    """Runs fovea with args; returns (exit code, stdout, stderr)."""
    p = subprocess.run([FOVEA, *args], capture_output=True, text=True, timeout=300)
    if expect is not None and p.returncode != expect:
        fail(f"fovea {' '.join(args)}: exit {p.returncode}, expected {expect}\n"
             f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p.returncode, p.stdout, p.stderr


def fail(message):
    print("FAIL: " + message, file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


SVG = "{http://www.w3.org/2000/svg}"


def read_svg(path):
    """The parsed SVG document at path (fails the case when missing or not well-formed XML)."""
    check(os.path.exists(path), f"{os.path.basename(path)} missing")
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as e:
        check(False, f"{path} is not well-formed XML: {e}")
    check(root.tag == SVG + "svg", f"{path}: root element {root.tag}")
    return root


def svg_elements(root, tag, cls=None):
    return [e for e in root.iter(SVG + tag) if cls is None or e.get("class") == cls]


def write_png(path, width, height, pixel):
    """An 8-bit RGB PNG whose pixel (x, y) is pixel(x, y) -> (r, g, b)."""
    raw = b"".join(b"\x00" + bytes(c for x in range(width) for c in pixel(x, y)) for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def read_png(path):
    """(width, height, channels, rows of bytes) of an 8-bit gray or RGB PNG, unfiltered."""
    with open(path, "rb") as f:
        data = f.read()
    check(data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG")
    pos, idat, width = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            check(depth == 8 and colour in (0, 2), f"{path}: depth {depth}, colour type {colour}")
            channels = 1 if colour == 0 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * channels, [], bytes(width * channels)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = bytes(line)
    return width, height, channels, rows


def case_summary_resnet50(tmp):
    _, out, _ = run("summary", "--arch", "resnet50", expect=0)
    check("25,557,032" in out, "resnet50 summary lacks 25,557,032:\n" + out)
    check("layer4.2.conv3" in out and "fc" in out, "resnet50 summary lacks its layer table:\n" + out)
    check(out.splitlines()[0].strip() != "", "first line should be the backend line")


def case_summary_resnet18(tmp):
    _, out, _ = run("summary", "--arch", "resnet18", "--size", "64", expect=0)
    check("11,689,512" in out, "resnet18 summary lacks 11,689,512:\n" + out)
    _, out, _ = run("summary", "--arch", "resnet18", "--num-classes", "5", "--width", "0.5", "--small-stem",
                    expect=0)
    check("small stem" in out and "5 classes" in out, "summary does not describe its flags:\n" + out)


def case_help_and_version(tmp):
    _, out, _ = run("--help", expect=0)
    for word in ("summary", "init", "predict", "--version"):
        check(word in out, f"--help lacks {word}:\n{out}")
    for cmd, flags in (("summary", ["--arch", "--size", "--small-stem"]),
                       ("init", ["--seed", "--out", "--num-classes"]),
                       ("predict", ["--weights", "--image", "--mean", "--std", "--normalization", "--device",
                                    "--partial", "--out"])):
        _, out, _ = run(cmd, "--help", expect=0)
        for flag in flags:
            check(flag in out, f"fovea {cmd} --help lacks {flag}:\n{out}")
    _, out, _ = run("--version", expect=0)
    check(out.startswith("fovea "), "--version: " + out)
    code, _, err = run(expect=2)
    check("fovea: error:" in err, "no subcommand: " + err)


def predict_inputs(tmp):
    square = os.path.join(tmp, "square.png")
    wide = os.path.join(tmp, "wide.png")
    write_png(square, 64, 64, lambda x, y: ((x * 4) % 256, (y * 4) % 256, (x * y) % 256))
    write_png(wide, 80, 50, lambda x, y: ((x * 3) % 256, 255 - (y * 5) % 256, 128))
    return square, wide


def case_init_and_predict(tmp):
    square, wide = predict_inputs(tmp)
    weights = os.path.join(tmp, "r18.safetensors")
    run("init", "--arch", "resnet18", "--num-classes", "5", "--seed", "3", "--out", weights, expect=0)
    check(os.path.getsize(weights) > 40_000_000, "init wrote a suspiciously small file")
    out = os.path.join(tmp, "pred.json")
    run("predict", "--arch", "resnet18", "--num-classes", "5", "--weights", weights, "--image", square, "--image",
        wide, "--size", "64", "--out", out, expect=0)
    with open(out) as f:
        result = json.load(f)
    check(result["arch"] == "resnet18" and result["num_classes"] == 5 and result["size"] == 64, str(result))
    check(isinstance(result["backend"], str) and result["weights"] == weights, str(result))
    check([r["image"] for r in result["images"]] == [square, wide], str(result["images"]))
    for r in result["images"]:
        p, logits = r["probabilities"], r["logits"]
        check(len(p) == 5 and len(logits) == 5, f"{r['image']}: {len(p)} probabilities, {len(logits)} logits")
        check(abs(sum(p) - 1.0) < 1e-5, f"{r['image']}: probabilities sum to {sum(p)}")
        check(all(0.0 <= v <= 1.0 and math.isfinite(v) for v in p), str(p))
        check(r["prediction"] == max(range(5), key=lambda j: logits[j]), f"prediction is not the argmax: {r}")
    check(result["images"][0]["logits"] != result["images"][1]["logits"], "two different images, equal logits")
    # Same weights, same images: bitwise the same output; --normalization dr changes the logits.
    again = os.path.join(tmp, "again.json")
    run("predict", "--arch", "resnet18", "--num-classes", "5", "--weights", weights, "--image", square, "--image",
        wide, "--size", "64", "--out", again, expect=0)
    with open(again) as f:
        check(json.load(f)["images"] == result["images"], "two runs differ")
    dr = os.path.join(tmp, "dr.json")
    run("predict", "--arch", "resnet18", "--num-classes", "5", "--weights", weights, "--image", square, "--size",
        "64", "--normalization", "dr", "--out", dr, expect=0)
    with open(dr) as f:
        d = json.load(f)
    check(abs(d["mean"][0] - 0.3203) < 1e-6 and d["images"][0]["logits"] != result["images"][0]["logits"], str(d))


def case_weights_mismatch(tmp):
    square, _ = predict_inputs(tmp)
    weights = os.path.join(tmp, "r18_k3.safetensors")
    run("init", "--arch", "resnet18", "--num-classes", "3", "--out", weights, expect=0)
    out = os.path.join(tmp, "pred.json")
    with open(out, "w") as f:
        f.write("previous contents\n")
    code, _, err = run("predict", "--arch", "resnet18", "--num-classes", "5", "--weights", weights, "--image", square,
                       "--size", "64", "--out", out, expect=1)
    check("fc.weight" in err and "fovea: error:" in err, "mismatch message does not name fc.weight:\n" + err)
    with open(out) as f:
        check(f.read() == "previous contents\n", "a failed predict changed the existing output file")
    check(sorted(os.listdir(tmp)) == sorted(["square.png", "wide.png", "r18_k3.safetensors", "pred.json"]),
          "a failed predict left files behind: " + str(os.listdir(tmp)))
    # Weights of another architecture.
    code, _, err = run("predict", "--arch", "resnet34", "--num-classes", "3", "--weights", weights, "--image", square,
                       "--size", "64", "--out", out, expect=1)
    check("layer" in err and "missing" in err, "arch mismatch message:\n" + err)
    # --partial loads what matches and reports the rest.
    part = os.path.join(tmp, "partial.json")
    code, _, err = run("predict", "--arch", "resnet18", "--num-classes", "5", "--weights", weights, "--image", square,
                       "--size", "64", "--partial", "--out", part, expect=0)
    check("fc.weight" in err and "mismatched" in err, "--partial does not report the mismatch:\n" + err)
    with open(part) as f:
        check(len(json.load(f)["images"][0]["probabilities"]) == 5, "partial output")


def case_missing_image(tmp):
    square, _ = predict_inputs(tmp)
    weights = os.path.join(tmp, "w.safetensors")
    run("init", "--arch", "resnet18", "--num-classes", "2", "--width", "0.25", "--out", weights, expect=0)
    out = os.path.join(tmp, "pred.json")
    missing = os.path.join(tmp, "no_such_photo.jpeg")
    code, _, err = run("predict", "--arch", "resnet18", "--num-classes", "2", "--width", "0.25", "--weights", weights,
                       "--image", square, "--image", missing, "--size", "64", "--out", out, expect=1)
    check("no_such_photo.jpeg" in err and "fovea: error:" in err, "missing image message:\n" + err)
    check(not os.path.exists(out), "a failed predict wrote its output")
    notimage = os.path.join(tmp, "notes.png")
    with open(notimage, "w") as f:
        f.write("not an image")
    code, _, err = run("predict", "--arch", "resnet18", "--num-classes", "2", "--width", "0.25", "--weights", weights,
                       "--image", notimage, "--size", "64", "--out", out, expect=1)
    check("notes.png" in err, "non-image message:\n" + err)
    code, _, err = run("predict", "--arch", "resnet18", "--num-classes", "2", "--width", "0.25", "--weights",
                       os.path.join(tmp, "absent.safetensors"), "--image", square, "--out", out, expect=1)
    check("absent.safetensors" in err, "missing weights message:\n" + err)


def case_unknown_flag(tmp):
    code, _, err = run("summary", "--arch", "resnet18", "--frobnicate", expect=2)
    check("--frobnicate" in err, "unknown flag message:\n" + err)
    run("bogus", expect=2)


def case_unknown_arch(tmp):
    code, _, err = run("summary", "--arch", "resnet99", expect=2)
    check("resnet99" in err, "unknown arch message:\n" + err)
    run("init", "--arch", "resnet18", "--out", os.path.join(tmp, "w.safetensors"), expect=2)  # --num-classes


def case_bad_values(tmp):
    square, _ = predict_inputs(tmp)
    common = ["predict", "--arch", "resnet18", "--num-classes", "2", "--weights", "w", "--image", square, "--out",
              os.path.join(tmp, "p.json")]
    run(*common, "--mean", "0.5,0.5", "--std", "1,1,1", expect=2)
    run(*common, "--mean", "0.5,0.5,0.5", expect=2)  # --mean needs --std
    run(*common, "--std", "1,0,1", "--mean", "0,0,0", expect=2)
    run(*common, "--normalization", "dr", "--mean", "0,0,0", "--std", "1,1,1", expect=2)
    run(*common, "--normalization", "cifar", expect=2)
    run(*common, "--device", "gpu7", expect=2)
    run(*common, "--size", "0", expect=2)
    run("summary", "--arch", "resnet18", "--width", "-1", expect=2)
    code, _, err = run("init", "--arch", "resnet18", "--num-classes", "2", "--out",
                       os.path.join(tmp, "no_dir", "w.safetensors"), expect=1)
    check("no_dir" in err, "unwritable output message:\n" + err)


def case_study_smoke(tmp):
    """The main job at toy size: generate, pretrain (SimCLR), fine-tune twice, evaluate twice; then a
    second run in the same folder resumes every stage instead of training again."""
    out = os.path.join(tmp, "study")
    args = ["study", "--out", out, "--count", "32", "--size", "32", "--pretrain-epochs", "1",
            "--finetune-epochs", "1", "--batch-size", "8", "--threads", "1", "--device", "cpu"]
    _, stdout, _ = run(*args, expect=0)
    check("SimCLR init" in stdout and "random init" in stdout, "no result table:\n" + stdout)
    for sub in ("pretrain_simclr", "finetune_simclr", "finetune_random", "evaluate_simclr", "evaluate_random"):
        for f in ("config.json", "environment.json", "log.txt"):
            check(os.path.exists(os.path.join(out, sub, f)), f"{sub}/{f} missing")
    check(os.path.exists(os.path.join(out, "pretrain_simclr", "backbone.safetensors")), "no backbone weights")
    # Whether SimCLR left chance (log(2 x 8 - 1) at batch 8), in the output and in study.json.
    with open(os.path.join(out, "study.json")) as f:
        pre = json.load(f)["pretraining"]["simclr"]
    check(abs(pre["chance_loss"] - math.log(15)) < 1e-12 and pre["steps"] > 0 and
          pre["left_chance"] == (pre["loss"] < 0.98 * pre["chance_loss"]), f"study.json pretraining: {pre}")
    check("study: pretraining, means of the last logged steps against chance" in stdout,
          "no pretraining table:\n" + stdout)
    # SimCLR learns from the training patients only (--pretrain-images train, the default): the
    # fine-tuning stages' split, validation and test patients held out.
    with open(os.path.join(out, "pretrain_simclr", "config.json")) as f:
        check(json.load(f).get("images") == "train", "the study's pretraining is not on the training patients")
    with open(os.path.join(out, "pretrain_simclr", "split.csv")) as a, \
            open(os.path.join(out, "finetune_random", "split.csv")) as b:
        check(a.read() == b.read(), "the study's pretraining split is not its fine-tuning split")
    # Every stage's config.json replays through `fovea <command> --config`: each key is one of that
    # command's flags (names with '_' for '-').
    flags = {}
    for sub in sorted(os.listdir(out)):
        path = os.path.join(out, sub, "config.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            config = json.load(f)
        command = config["command"]
        if command not in flags:
            _, text, _ = run(command, "--help", expect=0)
            flags[command] = set(re.findall(r"--([a-z0-9][a-z0-9-]*)", text))
        unknown = [k for k in config if k != "command" and k.replace("_", "-") not in flags[command]]
        check(not unknown, f"{sub}/config.json: keys that are not flags of `fovea {command}`: {unknown}")
    check({"pretrain", "finetune", "evaluate", "robustness", "saliency"} <= set(flags),
          f"stages with a config.json: {sorted(flags)}")
    for sub in ("finetune_simclr", "evaluate_random"):
        with open(os.path.join(out, sub, "results.json")) as f:
            r = json.load(f)
        check("kappa" in json.dumps(r), f"{sub}/results.json has no kappa")
        with open(os.path.join(out, sub, "predictions.csv")) as f:
            check(f.readline().startswith("image,label,pred,p0"), f"{sub}/predictions.csv header")
        cells = svg_elements(read_svg(os.path.join(out, sub, "confusion.svg")), "rect", "cell")
        check(len(cells) == 25, f"{sub}/confusion.svg: {len(cells)} cells for 5 grades")
        panels = svg_elements(read_svg(os.path.join(out, sub, "evaluation.svg")), "svg", "panel")
        check(1 <= len(panels) <= 2, f"{sub}/evaluation.svg: ROC (when both classes) and reliability panels")
    # Pretraining logs the embedding health on its train rows and, the synthetic images being graded,
    # a kNN accuracy row after its epoch.
    with open(os.path.join(out, "pretrain_simclr", "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    train_rows = [r for r in rows if r["phase"] == "train"]
    check(train_rows and all(1.0 <= r["effective_rank"] <= 128 and 0.0 <= r["alignment"] <= 4.0
                             and -8.0 <= r["uniformity"] <= 0.0 for r in train_rows),
          f"pretrain embedding health: {train_rows}")
    knn = [r["knn_top1"] for r in rows if r["phase"] == "val" and "knn_top1" in r]
    check(len(knn) == 1 and 0.0 <= knn[0] <= 1.0, f"pretrain kNN rows: {rows}")
    # The study's own summary: study.csv / study.json repeat the table, study.svg draws it.
    with open(os.path.join(out, "study.json")) as f:
        summary = json.load(f)
    cells = {(c["regime"], c["protocol"]): c for c in summary["cells"]}
    check(sorted(cells) == [("random", "finetune"), ("simclr", "finetune")], f"study.json cells: {sorted(cells)}")
    with open(os.path.join(out, "evaluate_simclr", "results.json")) as f:
        ev = json.load(f)
    check(abs(cells[("simclr", "finetune")]["metrics"]["kappa"]["point"] - ev["quadratic_weighted_kappa"]["point"]) < 1e-12,
          f"study.json kappa {cells[('simclr', 'finetune')]['metrics']['kappa']} vs results.json {ev['quadratic_weighted_kappa']}")
    check(set(summary["robustness"]) == {"random", "simclr"} and summary["robustness_reference"] == "random",
          f"study.json robustness: {summary['robustness']}")
    by = summary["robustness"]["simclr"]["error_by_severity"]
    check(sorted(by) == ["1", "2", "3", "4", "5"] and all(v is None or 0 <= v <= 1 for v in by.values()),
          f"error by severity: {by}")
    with open(os.path.join(out, "study.csv")) as f:
        lines = f.read().splitlines()
    check(lines[0].startswith("regime,protocol,label_fraction,images,kappa,kappa_low,kappa_high") and len(lines) == 3,
          f"study.csv: {lines}")
    # Feature statistics: every conv, BN and linear layer of both models on the test images, the
    # reference (random init) first; SimCLR's CKA with it layer by layer.
    feats = summary["features"]
    check(set(feats) == {"random", "simclr"} and summary["features_reference"] == "random" and
          summary["features_cn_percentiles"] == [99.9, 90.0], f"study.json features: {list(feats)}")
    with open(os.path.join(out, "features_simclr", "features.json")) as f:
        fj = json.load(f)
    with open(os.path.join(out, "finetune_simclr", "split.csv")) as f:
        test_ids = sorted(line.split(",")[0] for line in f.read().splitlines()[1:] if line.endswith(",test"))
    check(sorted(os.path.splitext(i)[0] for i in fj["images"]) == sorted(os.path.splitext(i)[0] for i in test_ids)
          and fj["data"]["split_name"] == "test", f"features images {fj['images']} vs test split {test_ids}")
    check(fj["compare"]["weights"].endswith(os.path.join("finetune_random", "best.safetensors")),
          "features_simclr is not compared with random init")
    layers = feats["simclr"]["layers"]
    check([l["layer"] for l in layers] == [l["path"] for l in fj["layers"]] == resnet18_feature_layers(),
          f"study features layers {[l['layer'] for l in layers]}")
    diagonal = {d["layer"]: d["cka"] for d in fj["cka_compare"]["diagonal"]}
    for l, lj in zip(layers, fj["layers"]):
        check(l["cn"] == lj["cn"] and l["cka_reference"] == diagonal[l["layer"]] and 0 <= l["cka_reference"] <= 1 + 1e-9,
              f"{l} vs features.json {lj['cn']}, {diagonal[l['layer']]}")
    check(all(l["cka_reference"] is None for l in feats["random"]["layers"]), "the reference has a CKA with itself")
    cns = sorted(l["cn"] for l in layers)
    check(feats["simclr"]["max_cn"] == cns[-1] and
          abs(feats["simclr"]["median_cn"] - (cns[len(cns) // 2] if len(cns) % 2 else
                                               0.5 * (cns[len(cns) // 2 - 1] + cns[len(cns) // 2]))) < 1e-12,
          f"median / max CN {feats['simclr']['median_cn']} {feats['simclr']['max_cn']}")
    mean_cka = sum(l["cka_reference"] for l in layers) / len(layers)
    check(abs(feats["simclr"]["mean_cka_reference"] - mean_cka) < 1e-12, "mean CKA with the reference")
    check(feats["simclr"]["first_conv"]["layer"] == "conv1" and
          feats["simclr"]["first_conv"]["kurtosis"] == fj["first_conv"]["kurtosis"], str(feats["simclr"]["first_conv"]))
    rows = read_csv(os.path.join(out, "study_features.csv"))
    check(rows[0] == ["regime", "layer", "kind", "cn", "cka_reference"] and len(rows) == 1 + 2 * len(layers),
          f"study_features.csv: {rows[:2]}, {len(rows)} rows")
    check("study: feature statistics on the test split" in stdout and "mean CKA" in stdout,
          "no feature-statistics table:\n" + stdout)
    # The external test set (auto with synthetic data): a quarter as many images (at least 20) from a
    # second site's camera, on other patients; every model evaluated on all of them.
    site = read_csv(os.path.join(out, "data_site1", "labels.csv"))
    check(site[0] == ["image", "level"] and len(site) == 21, f"data_site1/labels.csv: {len(site)} lines")
    check("study: external test set synthetic_site1" in stdout and "kappa change" in stdout,
          "no external table:\n" + stdout)
    ext = summary["external"]
    check(len(ext) == 1 and ext[0]["name"] == "synthetic_site1" and ext[0]["images"] == 20 and
          ext[0]["excluded_rows"] == 0 and
          ext[0]["data"] == os.path.join(out, "data_site1"), f"study.json external: {ext}")
    ext_cells = {c["regime"]: c for c in ext[0]["cells"]}
    check(sorted(ext_cells) == ["random", "simclr"], f"external cells {sorted(ext_cells)}")
    for regime in ("random", "simclr"):
        with open(os.path.join(out, f"external_synthetic_site1_{regime}", "results.json")) as f:
            er = json.load(f)
        with open(os.path.join(out, f"external_synthetic_site1_{regime}", "config.json")) as f:
            ec = json.load(f)
        check(ec["data"] == os.path.join(out, "data_site1") and ec["split"] == "" and
              ec["weights"] == cells[(regime, "finetune")]["weights"], f"external {regime} config: {ec}")
        k = ext_cells[regime]["metrics"]["kappa"]["point"]
        check(abs(k - er["quadratic_weighted_kappa"]["point"]) < 1e-12 and
              abs(ext_cells[regime]["kappa_change"] - (k - cells[(regime, "finetune")]["metrics"]["kappa"]["point"]))
              < 1e-12, f"external {regime}: {ext_cells[regime]} vs {er['quadratic_weighted_kappa']}")
    rows = read_csv(os.path.join(out, "study_external.csv"))
    check(rows[0][:5] == ["set", "regime", "protocol", "label_fraction", "images"] and rows[0][-1] == "kappa_change"
          and len(rows) == 3 and rows[1][0] == "synthetic_site1" and rows[1][4] == "20", f"study_external.csv: {rows}")
    # Paired comparisons with the reference (random init), on the test split and the external set;
    # `fovea compare` on the two evaluation folders (their predictions.csv) gives the same object.
    comps = summary["comparisons"]
    check(summary["comparisons_reference"] == "random" and [c["set"] for c in comps] == ["test", "synthetic_site1"]
          and all(c["regime"] == "simclr" and c["reference"] == "random" for c in comps), f"comparisons: {comps}")
    check("study: paired comparison with random init on the test split" in stdout and "p (McNemar)" in stdout,
          "no comparison table:\n" + stdout)
    t = comps[0]["comparison"]
    kappa_diff = cells[("simclr", "finetune")]["metrics"]["kappa"]["point"] - cells[("random", "finetune")]["metrics"]["kappa"]["point"]
    check(abs(t["quadratic_weighted_kappa"]["difference"]["point"] - kappa_diff) < 1e-12 and
          t["n"] == cells[("simclr", "finetune")]["images"] and t["resamples"] == 1000, f"test comparison: {t}")
    check(0 < t["quadratic_weighted_kappa"]["p_value"] <= 1 and t["mcnemar"]["only_a"] + t["mcnemar"]["only_b"] +
          t["mcnemar"]["both"] + t["mcnemar"]["neither"] == t["n"], f"comparison p / McNemar counts: {t}")
    rows = read_csv(os.path.join(out, "study_comparisons.csv"))
    check(rows[0][:6] == ["set", "regime", "protocol", "label_fraction", "reference", "images"] and len(rows) == 3
          and rows[1][0] == "test" and rows[2][0] == "synthetic_site1", f"study_comparisons.csv: {rows}")
    cmp_out = os.path.join(tmp, "compare")
    _, cmp_stdout, _ = run("compare", os.path.join(out, "evaluate_simclr"),
                           os.path.join(out, "evaluate_random", "predictions.csv"), "--names", "simclr,random",
                           "--out", cmp_out, expect=0)
    with open(os.path.join(cmp_out, "comparison.json")) as f:
        cj = json.load(f)
    check(cj["comparison"] == t and cj["a"]["name"] == "simclr" and cj["b"]["predictions"].endswith("predictions.csv"),
          f"fovea compare {cj} vs the study's {t}")
    check("DeLong" in cmp_stdout and "McNemar" in cmp_stdout, cmp_stdout)
    svg = read_svg(os.path.join(out, "study.svg"))
    check(len(svg_elements(svg, "svg", "panel")) == 7,
          "study.svg: kappa, external kappa, paired differences, robustness, saliency, CN and CKA panels")
    check(len(svg_elements(svg, "line", "errorbar")) == 8,
          "study.svg: one kappa interval per regime, per regime on the test split and the external set, and "
          "the paired difference on each")
    # environment.json names the CPU GEMM, with OpenBLAS the kernel it picked for this CPU; pinned
    # with OPENBLAS_CORETYPE, another run records the pinned kernel (bitwise reproducibility across
    # machines needs the same kernel).
    with open(os.path.join(out, "evaluate_simclr", "environment.json")) as f:
        gemm = json.load(f)["cpu_gemm"]
    check(gemm in ("cblas", "fovea blocked loop") or re.fullmatch(r"OpenBLAS .*, kernel \S+", gemm),
          f"environment.json cpu_gemm: {gemm!r}")
    # OpenBLAS's idle spin: fovea restarts itself with OPENBLAS_THREAD_TIMEOUT=12 when it is unset,
    # and keeps a value the caller sets (the pinned run below sets 20).
    with open(os.path.join(out, "evaluate_simclr", "environment.json")) as f:
        timeout = json.load(f)["openblas_thread_timeout"]
    if gemm.startswith("OpenBLAS") and sys.platform.startswith("linux"):
        check(timeout == os.environ.get("OPENBLAS_THREAD_TIMEOUT", "12"),
              f"environment.json openblas_thread_timeout: {timeout!r}")
    with open("/proc/cpuinfo") as f:
        avx2 = " avx2" in f.read()
    if gemm.startswith("OpenBLAS") and "DYNAMIC_ARCH" in gemm and avx2:
        pinned = os.path.join(tmp, "pinned")
        p = subprocess.run([FOVEA, "evaluate", "--data", os.path.join(out, "data"), "--weights",
                            cells[("simclr", "finetune")]["weights"], "--split",
                            os.path.join(out, "finetune_simclr", "split.csv"), "--out", pinned, "--arch", "resnet18",
                            "--width", "0.25", "--small-stem", "--size", "32", "--batch-size", "8", "--threads", "1",
                            "--device", "cpu"], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_THREAD_TIMEOUT": "20"})
        check(p.returncode == 0, f"evaluate with OPENBLAS_CORETYPE=Haswell: exit {p.returncode}\n{p.stderr}")
        with open(os.path.join(pinned, "environment.json")) as f:
            pinned_gemm = json.load(f)["cpu_gemm"]
        check(pinned_gemm.lower().endswith("kernel haswell") and "CPU GEMM: OpenBLAS" in p.stdout,
              f"OPENBLAS_CORETYPE=Haswell recorded as {pinned_gemm!r}")
        with open(os.path.join(pinned, "environment.json")) as f:
            pinned_timeout = json.load(f)["openblas_thread_timeout"]
        check(pinned_timeout == "20", f"OPENBLAS_THREAD_TIMEOUT=20 recorded as {pinned_timeout!r}")
    # environment.json and the log name how the CPU convolutions run (the direct kernel where
    # FOVEA_CPU_CONV=auto picks it); FOVEA_CPU_CONV=gemm is recorded, and an unknown value is an
    # error naming the variable before anything runs.
    with open(os.path.join(out, "evaluate_simclr", "environment.json")) as f:
        conv = json.load(f)["cpu_conv"]
    check(re.match(r"(direct .* kernel for same stride-1 convolutions|im2col \+ GEMM)", conv),
          f"environment.json cpu_conv: {conv!r}")
    eval_args = [FOVEA, "evaluate", "--data", os.path.join(out, "data"), "--weights",
                 cells[("simclr", "finetune")]["weights"], "--split", os.path.join(out, "finetune_simclr", "split.csv"),
                 "--arch", "resnet18", "--width", "0.25", "--small-stem", "--size", "32", "--batch-size", "8",
                 "--device", "cpu"]
    gemm_run = os.path.join(tmp, "conv-gemm")
    p = subprocess.run(eval_args + ["--out", gemm_run], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "FOVEA_CPU_CONV": "gemm"})
    check(p.returncode == 0, f"evaluate with FOVEA_CPU_CONV=gemm: exit {p.returncode}\n{p.stderr}")
    with open(os.path.join(gemm_run, "environment.json")) as f:
        gemm_conv = json.load(f)["cpu_conv"]
    check(gemm_conv == "im2col + GEMM (FOVEA_CPU_CONV=gemm)" and "CPU convolutions: im2col + GEMM" in p.stdout,
          f"FOVEA_CPU_CONV=gemm recorded as {gemm_conv!r}")
    p = subprocess.run(eval_args + ["--out", os.path.join(tmp, "conv-bad")], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "FOVEA_CPU_CONV": "fast"})
    check(p.returncode != 0 and "FOVEA_CPU_CONV must be auto, gemm or direct, got 'fast'" in p.stderr,
          f"FOVEA_CPU_CONV=fast: exit {p.returncode}\n{p.stderr}")
    # Resume: the checkpoints say every stage is complete, so nothing trains again.
    with open(os.path.join(out, "pretrain_simclr", "metrics.jsonl")) as f:
        before = f.read()
    run(*args, expect=0)
    with open(os.path.join(out, "pretrain_simclr", "metrics.jsonl")) as f:
        check(f.read() == before, "a resumed, finished pretraining run changed its metrics")


def case_study_grid(tmp):
    """The study's comparison grid at toy size: regimes random, imagenet (weights of `fovea init` as
    the stand-in) and MoCo v2, fine-tuning and linear evaluation, all and half of the labels: one run
    folder and one table row per cell, robustness against random init, saliency per regime; bad grids
    are usage errors before anything trains."""
    weights = os.path.join(tmp, "imagenet.safetensors")
    run("init", "--arch", "resnet18", "--num-classes", "1000", "--width", "0.25", "--small-stem", "--seed", "3",
        "--out", weights, expect=0)
    # An external set laid out as Messidor-2 (Krause et al.'s grade file, float grades, an ungradable
    # image, images under IMAGES/), from a second site's synthetic camera.
    m2 = os.path.join(tmp, "messidor2")
    run("generate", "--out", os.path.join(tmp, "site1"), "--count", "6", "--size", "40", "--seed", "11",
        "--site", "1", expect=0)
    os.makedirs(os.path.join(m2, "IMAGES"))
    lines = ["image_id,adjudicated_dr_grade,adjudicated_dme,adjudicated_gradable"]
    for name, level in read_csv(os.path.join(tmp, "site1", "labels.csv"))[1:]:
        shutil.copy(os.path.join(tmp, "site1", "images", name + ".png"), os.path.join(m2, "IMAGES", name + ".png"))
        lines.append(f"{name}.png,{level}.0,0.0,1")
    lines.append("IM000999.JPG,,,0")
    with open(os.path.join(m2, "messidor_data.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    # The same images as a Messidor-1 annotation sheet (grades 0-3: ICDR 4 becomes Messidor 3, the
    # referable ones stay referable), named by its CSV file: scored as referable >= 2.
    m1 = os.path.join(m2, "IMAGES", "Annotation_Base11.csv")
    with open(m1, "w") as f:
        f.write("Image name,Ophthalmologic department,Retinopathy grade,Risk of macular edema \n")
        for name, level in read_csv(os.path.join(tmp, "site1", "labels.csv"))[1:]:
            f.write(f"{name}.png,CHU de St Etienne,{min(int(level), 3)},0\n")
    out = os.path.join(tmp, "grid")
    args = ["study", "--out", out, "--count", "32", "--size", "32", "--pretrain-epochs", "1", "--finetune-epochs",
            "1", "--batch-size", "8", "--threads", "1", "--device", "cpu", "--regimes", "random,imagenet,moco",
            "--protocols", "finetune,linear", "--label-fractions", "1,0.5", "--imagenet-weights", weights,
            "--corruptions", "gaussian_noise", "--severities", "1", "--saliency", "grad_cam", "--saliency-count", "2",
            "--saliency-randomization", "0", "--features", "conv1,layer4.1.bn2,fc", "--features-count", "3",
            "--external", "m2=" + m2 + ",m1=" + m1]
    _, stdout, _ = run(*args, expect=0)
    check(os.path.exists(os.path.join(out, "pretrain_moco", "backbone.safetensors")), "no MoCo backbone")
    check(not os.path.exists(os.path.join(out, "data_site1")), "--external m2=... also generated synthetic_site1")
    with open(os.path.join(out, "study.json")) as f:
        grid = json.load(f)
    ext = grid["external"]
    check([e["name"] for e in ext] == ["m2", "m1"] and ext[0]["images"] == 6 and ext[0]["excluded_rows"] == 1 and
          len(ext[0]["cells"]) == 12, f"study.json external: {ext}")
    # Messidor-1: every graded model scored as a referable >= 2 classifier. Its referable AUC is the
    # Messidor-2 layout's (the same images, scores and referable labels); no kappa change from the
    # test split (a binary kappa is not the graded one).
    check(ext[0]["scored_as"] == "grades" and ext[1]["scored_as"] == "referable>=2" and ext[1]["images"] == 6,
          f"study.json external scored_as: {[(e['name'], e.get('scored_as')) for e in ext]}")
    check("external set m1 holds Messidor-1 grades" in stdout and
          "the grades scored as referable>=2" in stdout, "Messidor-1 heading:\n" + stdout)
    for m1_cell, m2_cell in zip(ext[1]["cells"], ext[0]["cells"]):
        a1, a2 = m1_cell["metrics"]["referable_auc"]["point"], m2_cell["metrics"]["referable_auc"]["point"]
        check(m1_cell["kappa_change"] is None and (a1 == a2 or (a1 is None and a2 is None)),
              f"m1 cell {m1_cell} against m2 cell {m2_cell}")
    with open(os.path.join(out, "external_m1_moco", "results.json")) as f:
        r1 = json.load(f)
    with open(os.path.join(out, "external_m1_moco", "predictions.csv")) as f:
        check(f.readline().strip() == "image,label,pred,p0,p1", "external_m1_moco/predictions.csv header")
    check(r1["as_binary"] == "referable>=2" and r1["num_classes"] == 2 and r1["n"] == 6,
          f"external_m1_moco/results.json: {r1}")
    # Paired comparisons: each of the 8 imagenet and moco cells against random init's cell of the same
    # protocol and fraction, on the test split and on m2.
    comps = grid["comparisons"]
    keys = sorted((c["set"], c["regime"], c["protocol"], c["label_fraction"]) for c in comps)
    check(keys == sorted((s, r, p, f) for s in ("test", "m2", "m1") for r in ("imagenet", "moco")
                         for p in ("finetune", "linear") for f in (1.0, 0.5)) and
          all(c["reference"] == "random" for c in comps), f"grid comparisons: {keys}")
    for c in comps:
        if c["set"] != "m2":
            continue
        mine = next(x for x in ext[0]["cells"] if (x["regime"], x["protocol"], x["label_fraction"]) ==
                    (c["regime"], c["protocol"], c["label_fraction"]))
        ref = next(x for x in ext[0]["cells"] if (x["regime"], x["protocol"], x["label_fraction"]) ==
                   ("random", c["protocol"], c["label_fraction"]))
        d = c["comparison"]["quadratic_weighted_kappa"]
        a, b = mine["metrics"]["kappa"]["point"], ref["metrics"]["kappa"]["point"]
        check(c["comparison"]["n"] == 6 and (a is None or b is None or abs(d["difference"]["point"] - (a - b)) < 1e-12),
              f"m2 comparison {c['regime']} {c['protocol']} {c['label_fraction']}: {d} vs {a} - {b}")
    with open(os.path.join(out, "external_m2_moco", "results.json")) as f:
        er = json.load(f)
    check(er["n"] == 6 and er["excluded_rows"] == 1, f"external_m2_moco/results.json: n {er['n']}, "
          f"excluded {er.get('excluded_rows')}")
    check("study: external test set m2 (6 images" in stdout and "1 rows left out (ungradable)" in stdout,
          "external table heading:\n" + stdout)
    check(os.path.exists(os.path.join(out, "external_m2_linear_moco_f0.5", "results.json")),
          f"external run folders: {sorted(d for d in os.listdir(out) if d.startswith('external'))}")
    check(len([d for d in os.listdir(out) if d.startswith("external_m2_")]) == 12 and
          len([d for d in os.listdir(out) if d.startswith("external_m1_")]) == 12, "one external run per cell")
    check("1 rows of" in stdout and "ungradable" in stdout, "the ungradable Messidor-2 row is not reported")
    check(not os.path.exists(os.path.join(out, "pretrain_random")), "random init was pretrained")
    # MoCo's queue is sized to the images it learns from, the training patients of the split: half
    # of them in whole batches of 8 (at least one batch).
    with open(os.path.join(out, "pretrain_moco", "split.csv")) as f:
        train = sum(1 for line in f.read().splitlines()[1:] if line.endswith(",train"))
    queue = max(8, train // 2 // 8 * 8)
    with open(os.path.join(out, "pretrain_moco", "log.txt")) as f:
        log = f.read()
    check(f"{train} of the 32 images" in log and f"MoCo queue of {queue} keys" in log,
          f"the study's MoCo queue is not sized to its {train} training images:\n{log}")
    for regime in ("random", "imagenet", "moco"):
        for sub in (f"finetune_{regime}", f"linear_{regime}", f"finetune_{regime}_f0.5", f"linear_{regime}_f0.5",
                    f"evaluate_{regime}", f"evaluate_linear_{regime}", f"evaluate_{regime}_f0.5",
                    f"evaluate_linear_{regime}_f0.5", f"robustness_{regime}", f"saliency_{regime}"):
            check(os.path.exists(os.path.join(out, sub, "config.json")), f"{sub}/config.json missing")
        check(os.path.exists(os.path.join(out, f"features_{regime}", "features.json")),
              f"features_{regime}/features.json missing")
    with open(os.path.join(out, "linear_moco_f0.5", "config.json")) as f:
        cfg = json.load(f)
    check(cfg["linear"] is True and cfg["label_fraction"] == 0.5 and cfg["init"].endswith("backbone.safetensors"),
          f"linear_moco_f0.5 config: {cfg}")
    with open(os.path.join(out, "finetune_imagenet", "config.json")) as f:
        check(json.load(f)["init"] == weights, "the imagenet regime did not start from --imagenet-weights")
    # The test-split table: the lines between its heading and the next table's.
    test_table = stdout.split("study: test split")[1].split("\nstudy:")[0]
    rows = [line for line in test_table.splitlines()
            if line.startswith(("random init ", "ImageNet init ", "MoCo v2 init "))]
    perf = [r for r in rows if "[" in r]
    check(len(perf) == 12, "performance rows:\n" + "\n".join(perf))
    external_table = stdout.split("study: external test set m2 (6 images")[1].split("\nstudy:")[0]
    check(len([r for r in external_table.splitlines() if "[" in r]) == 12, "external rows:\n" + external_table)
    check(any("linear" in r and "50%" in r for r in perf), "no linear 50% row")
    with open(os.path.join(out, "robustness_moco", "config.json")) as f:
        check(json.load(f)["reference"].endswith(os.path.join("robustness_random", "robustness.csv")),
              "MoCo's mCE is not against random init")
    check("mCE vs random init" in stdout and "grad_cam" in stdout, "robustness / saliency tables:\n" + stdout)
    # Feature statistics of the named layers on 3 test images, each regime's CKA against random init.
    with open(os.path.join(out, "features_moco", "features.json")) as f:
        fj = json.load(f)
    check([l["path"] for l in fj["layers"]] == ["conv1", "layer4.1.bn2", "fc"] and len(fj["images"]) == 3,
          f"features_moco: {[l['path'] for l in fj['layers']]}, {fj['images']}")
    check(fj["compare"]["weights"].endswith(os.path.join("finetune_random", "best.safetensors")),
          "MoCo's CKA is not against random init")
    with open(os.path.join(out, "study.json")) as f:
        feats = json.load(f)["features"]
    check(sorted(feats) == ["imagenet", "moco", "random"] and
          all(len(v["layers"]) == 3 for v in feats.values()), f"study.json features: {feats}")
    # Bad grids: usage errors naming the problem, nothing trained.
    bad = os.path.join(tmp, "bad")
    base = ["study", "--out", bad, "--count", "8", "--device", "cpu"]
    code, _, err = run(*base, "--regimes", "random,byol")
    check(code == 2 and "byol" in err, f"unknown regime: exit {code}\n{err}")
    code, _, err = run(*base, "--regimes", "imagenet")
    check(code == 2 and "--imagenet-weights" in err, f"imagenet without weights: exit {code}\n{err}")
    code, _, err = run(*base, "--label-fractions", "1,0")
    check(code == 2 and "'0'" in err, f"zero label fraction: exit {code}\n{err}")
    code, _, err = run(*base, "--protocols", "finetune,probe")
    check(code == 2 and "probe" in err, f"unknown protocol: exit {code}\n{err}")
    code, _, err = run(*base, "--features", "conv1,layer9")
    check(code == 2 and "layer9" in err and "--features" in err, f"unknown feature layer: exit {code}\n{err}")
    code, _, err = run(*base, "--external", "m2=" + os.path.join(tmp, "nowhere"))
    check(code == 2 and "nowhere" in err and "--external" in err, f"missing external set: exit {code}\n{err}")
    code, _, err = run(*base, "--external", "a=" + m2 + ",a=" + m2)
    check(code == 2 and "twice" in err, f"duplicate external name: exit {code}\n{err}")
    code, _, err = run(*base, "--external", m2)
    check(code == 2 and "NAME=PATH" in err, f"external without a name: exit {code}\n{err}")
    code, _, err = run(*base, "--external", "test=" + m2)
    check(code == 2 and "'test'" in err, f"external set named test: exit {code}\n{err}")
    check(not os.path.exists(bad), "a rejected study wrote its output folder")


def case_study_seeds(tmp):
    """--seeds 0,1: the whole grid twice in seed_0/ and seed_1/ on the same synthetic data, each with
    its own seed; study_seeds.json / .csv hold every figure's per-seed values, mean, sd (ddof 1) and
    range, recomputed here from the replicates' study.json; a bad --seeds is a usage error."""
    out = os.path.join(tmp, "seeds")
    args = ["study", "--out", out, "--count", "32", "--size", "32", "--pretrain-epochs", "1", "--finetune-epochs",
            "1", "--batch-size", "8", "--threads", "1", "--device", "cpu", "--corruptions", "gaussian_noise",
            "--severities", "1", "--saliency", "grad_cam", "--saliency-count", "2", "--saliency-randomization", "0",
            "--features", "conv1,fc", "--seeds", "0,1"]
    _, stdout, _ = run(*args, expect=0)
    check("study: 2 replicates (seeds 0,1)" in stdout, "no replicate table:\n" + stdout)
    per_seed = {}
    for seed in (0, 1):
        with open(os.path.join(out, f"seed_{seed}", "finetune_simclr", "config.json")) as f:
            check(json.load(f)["seed"] == seed, f"seed_{seed} did not fine-tune with --seed {seed}")
        with open(os.path.join(out, f"seed_{seed}", "study.json")) as f:
            per_seed[seed] = json.load(f)
        with open(os.path.join(out, f"seed_{seed}", "finetune_simclr", "config.json")) as f:
            check(json.load(f)["data"] == os.path.join(out, "data"), "the replicates do not share the data")
    check(not os.path.exists(os.path.join(out, "study.json")), "a study.json beside the replicates")
    with open(os.path.join(out, "study_seeds.json")) as f:
        summary = json.load(f)
    check(summary["seeds"] == [0, 1] and summary["replicates"] == 2, str(summary["seeds"]))
    rows = {(r["regime"], r["protocol"], r["metric"]): r for r in summary["rows"]}

    def expect(key, values):
        r = rows.get(key)
        vals = [v for v in values if v is not None]
        if not vals:
            check(r is None, f"{key}: a row for a figure undefined in every replicate")
            return
        check(r is not None, f"{key}: no row")
        mean = sum(vals) / len(vals)
        sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
        check(r["values"] == values and r["seeds"] == len(vals) and abs(r["mean"] - mean) < 1e-12 and
              (sd is None and r["sd"] is None or abs(r["sd"] - sd) < 1e-12) and r["min"] == min(vals) and
              r["max"] == max(vals), f"{key}: {r} vs values {values}")
        # the mean's 95 % t interval: t_{1, 0.975} = tan(0.475 pi) for two seeds
        if len(vals) == 2 and sd > 0:
            half = math.tan(0.475 * math.pi) * sd / math.sqrt(2)
            check(abs(r["mean_low"] - (mean - half)) < 1e-9 and abs(r["mean_high"] - (mean + half)) < 1e-9,
                  f"{key}: interval {r['mean_low']}, {r['mean_high']} vs {mean} -+ {half}")
        if "_diff_vs_" in key[2] and len(vals) == 2 and sd > 0:
            t = abs(mean) / (sd / math.sqrt(2))  # df 1: P(|T| > t) = 1 - 2 atan(t) / pi
            check(abs(r["p_mean_zero"] - (1 - 2 * math.atan(t) / math.pi)) < 1e-9, f"{key}: p {r['p_mean_zero']}")
        elif "_diff_vs_" not in key[2]:
            check(r["p_mean_zero"] is None, f"{key}: a t test of 0 for a figure that is no difference")

    for regime in ("simclr", "random"):
        cells = [next(c for c in per_seed[s]["cells"] if c["regime"] == regime) for s in (0, 1)]
        for m in ("kappa", "referable_auc", "accuracy"):
            expect((regime, "finetune", m), [c["metrics"][m]["point"] for c in cells])
        expect((regime, None, "mean_corrupted_error"), [per_seed[s]["robustness"][regime]["mean_error"] for s in (0, 1)])
        expect((regime, None, "mce"), [per_seed[s]["robustness"][regime]["mce"] for s in (0, 1)])
        expect((regime, None, "mass_inside_grad_cam"),
               [per_seed[s]["saliency"][regime]["methods"]["grad_cam"]["mass_inside"] for s in (0, 1)])
        ext_cells = [next(c for c in per_seed[s]["external"][0]["cells"] if c["regime"] == regime) for s in (0, 1)]
        expect((regime, "finetune", "external_synthetic_site1_kappa"),
               [c["metrics"]["kappa"]["point"] for c in ext_cells])
        if regime == "simclr":  # the paired differences from the reference, on the test split and the external set
            comps = [{c["set"]: c["comparison"] for c in per_seed[s]["comparisons"]} for s in (0, 1)]
            expect((regime, "finetune", "kappa_diff_vs_random"),
                   [c["test"]["quadratic_weighted_kappa"]["difference"]["point"] for c in comps])
            expect((regime, "finetune", "external_synthetic_site1_referable_auc_diff_vs_random"),
                   [c["synthetic_site1"]["referable"]["delong"]["difference"] for c in comps])
        expect((regime, None, "median_cn"), [per_seed[s]["features"][regime]["median_cn"] for s in (0, 1)])
        expect((regime, None, "mean_cka_reference"),
               [per_seed[s]["features"][regime]["mean_cka_reference"] for s in (0, 1)])
    csv_rows = read_csv(os.path.join(out, "study_seeds.csv"))
    check(csv_rows[0] == ["regime", "protocol", "label_fraction", "metric", "seeds", "mean", "sd", "min", "max",
                          "mean_low", "mean_high", "p_mean_zero", "values"] and len(csv_rows) == 1 + len(summary["rows"]), f"study_seeds.csv: {csv_rows[:2]}")
    code, _, err = run("study", "--out", os.path.join(tmp, "bad"), "--count", "8", "--device", "cpu", "--seeds", "0,x")
    check(code == 2 and "--seeds" in err and "'x'" in err, f"--seeds 0,x: exit {code}\n{err}")
    code, _, err = run("study", "--out", os.path.join(tmp, "bad"), "--count", "8", "--device", "cpu", "--seeds", "3,3")
    check(code == 2 and "twice" in err, f"--seeds 3,3: exit {code}\n{err}")
    check(not os.path.exists(os.path.join(tmp, "bad")), "a rejected study wrote its output folder")


def case_compare(tmp):
    """fovea compare on hand-made predictions.csv files: McNemar's counts, identical models (p 1),
    rows paired by image name, and the errors: other images, other labels, a malformed row, bad --names."""
    def write(name, rows, header="image,label,pred,p0,p1,p2"):
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
        return path
    # 12 images, labels 0..2; A right on the first 10, B right on images 2..11.
    def probs(pred):
        return [0.8 if k == pred else 0.1 for k in range(3)]
    labels = [i % 3 for i in range(12)]
    a_rows = [[f"img{i}", labels[i], p, *probs(p)] for i in range(12) for p in [labels[i] if i < 10 else (labels[i] + 1) % 3]]
    b_rows = [[f"img{i}", labels[i], p, *probs(p)] for i in range(12) for p in [labels[i] if i >= 2 else (labels[i] + 2) % 3]]
    a = write("a.csv", a_rows)
    b = write("b.csv", list(reversed(b_rows)))  # another order: rows are paired by image name
    out = os.path.join(tmp, "out")
    _, stdout, _ = run("compare", a, b, "--out", out, "--bootstrap", "200", "--referable-threshold", "1", expect=0)
    with open(os.path.join(out, "comparison.json")) as f:
        c = json.load(f)["comparison"]
    m = c["mcnemar"]
    check((m["only_a"], m["only_b"], m["both"], m["neither"]) == (2, 2, 8, 0) and m["p_value"] == 1.0, f"McNemar {m}")
    check(c["n"] == 12 and c["resamples"] == 200 and c["referable"]["threshold"] == 1 and
          c["accuracy"]["a"] == c["accuracy"]["b"] == 10 / 12, f"comparison {c}")
    check("compare: A against B on 12 images" in stdout, stdout)
    _, _, _ = run("compare", a, a, "--out", out, expect=0)
    with open(os.path.join(out, "comparison.json")) as f:
        same = json.load(f)["comparison"]
    check(same["quadratic_weighted_kappa"]["p_value"] == 1 and same["referable"]["delong"]["p_value"] == 1 and
          same["quadratic_weighted_kappa"]["difference"]["low"] == 0, f"identical models: {same}")
    # errors name what differs
    other = write("other.csv", [["x" + r[0], *r[1:]] for r in b_rows])
    code, _, err = run("compare", a, other)
    check(code == 1 and "img0" in err and "other.csv" in err, f"other images: exit {code}\n{err}")
    relabelled = write("relabelled.csv", [[r[0], (r[1] + 1) % 3 if r[0] == "img5" else r[1], *r[2:]] for r in b_rows])
    code, _, err = run("compare", a, relabelled)
    check(code == 1 and "img5" in err and "label" in err, f"other labels: exit {code}\n{err}")
    broken = write("broken.csv", b_rows[:3] + [["img3", 0, 0, "0.5", "abc", "0.5"]] + b_rows[4:])
    code, _, err = run("compare", a, broken)
    check(code == 1 and "broken.csv:5" in err and "abc" in err, f"malformed row: exit {code}\n{err}")
    scores = write("scores.csv", b_rows[:5] + [["img5", 2, 2, "0.1", "0.2", "3.5"]] + b_rows[6:])
    code, _, err = run("compare", a, scores)
    check(code == 1 and "scores.csv:7" in err and "p2" in err, f"a probability above 1: exit {code}\n{err}")
    unnormalised = write("sum.csv", b_rows[:5] + [["img5", 2, 2, "0.1", "0.2", "0.3"]] + b_rows[6:])
    code, _, err = run("compare", a, unnormalised)
    check(code == 1 and "sum.csv:7" in err and "sum to" in err, f"probabilities summing to 0.6: exit {code}\n{err}")
    not_argmax = write("pred.csv", b_rows[:5] + [["img5", 2, 0, "0.1", "0.1", "0.8"]] + b_rows[6:])
    code, _, err = run("compare", a, not_argmax)
    check(code == 1 and "pred.csv:7" in err and "pred 0" in err, f"pred not the argmax: exit {code}\n{err}")
    code, _, err = run("compare", a, write("hdr.csv", b_rows, header="id,level,x,p0,p1,p2"))
    check(code == 1 and "header" in err, f"wrong header: exit {code}\n{err}")
    code, _, err = run("compare", a, os.path.join(tmp, "missing"))
    check(code == 1 and "missing" in err, f"missing file: exit {code}\n{err}")
    code, _, err = run("compare", a, b, "--names", "one")
    check(code == 2 and "--names" in err, f"bad --names: exit {code}\n{err}")


def case_evaluate_as_binary(tmp):
    """evaluate --as-binary: a classifier of the 5 grades scored as a referable or any-DR one, with
    P(grade >= t) against labels >= t: the same referable AUC as the graded evaluation; Messidor-1's
    0-3 grades are refused on the grade scale and scored as binary; bad values are errors."""
    data = os.path.join(tmp, "data")
    run("generate", "--out", data, "--count", "24", "--size", "40", "--seed", "8", "--balanced", expect=0)
    small = ["--size", "32", "--width", "0.25", "--small-stem", "--batch-size", "8", "--threads", "1",
             "--device", "cpu"]
    ft = os.path.join(tmp, "ft")
    run("finetune", "--data", data, "--out", ft, "--epochs", "1", *small, expect=0)
    base = ["evaluate", "--data", data, "--weights", os.path.join(ft, "best.safetensors"), *small]
    graded = os.path.join(tmp, "graded")
    run(*base, "--out", graded, expect=0)

    def outputs(folder):
        with open(os.path.join(folder, "results.json")) as f:
            results = json.load(f)
        rows = read_csv(os.path.join(folder, "predictions.csv"))
        return results, rows[0], {r[0]: r[1:] for r in rows[1:]}

    g_res, g_head, g_rows = outputs(graded)
    check(g_head == ["image", "label", "pred", "p0", "p1", "p2", "p3", "p4"] and "as_binary" not in g_res,
          f"graded run: {g_head}, {sorted(g_res)}")
    for scheme, t, extra in (("referable>=2", 2, ["--as-binary", "referable"]),
                             ("referable>=3", 3, ["--as-binary", "referable", "--referable-threshold", "3"]),
                             ("referable>=3", 3, ["--as-binary", "referable>=3"]),
                             ("any_dr", 1, ["--as-binary", "any_dr"])):
        folder = os.path.join(tmp, "b" + "".join(c for c in "_".join(extra) if c.isalnum()))
        _, stdout, _ = run(*base, "--out", folder, *extra, expect=0)
        res, head, rows = outputs(folder)
        check(res["as_binary"] == scheme and res["num_classes"] == 2 and res["n"] == g_res["n"] and
              head == ["image", "label", "pred", "p0", "p1"], f"{extra}: {res.get('as_binary')}, {head}")
        check(f"the grades scored as {scheme}" in stdout, f"{extra}: log line\n{stdout}")
        for image, (label, pred, p0, p1) in rows.items():
            gl, gp = int(g_rows[image][0]), [float(v) for v in g_rows[image][2:]]
            s = sum(gp[t:])
            check(int(label) == int(gl >= t) and abs(float(p1) - s) < 2e-7 and abs(float(p0) - (1 - s)) < 2e-7
                  and int(pred) == int(float(p1) > float(p0)), f"{extra} {image}: {label, pred, p0, p1} vs {g_rows[image]}")
        if t == 2:  # the graded run's referable AUC is of the same score against the same labels
            check(res["referable"]["auc"]["point"] == g_res["referable"]["auc"]["point"],
                  f"AUC {res['referable']['auc']} vs the graded run's {g_res['referable']['auc']}")
    code, _, err = run(*base, "--out", os.path.join(tmp, "bad1"), "--as-binary", "grades")
    check(code == 1 and "--as-binary must be referable" in err, f"--as-binary grades: exit {code}\n{err}")
    code, _, err = run(*base, "--out", os.path.join(tmp, "bad2"), "--as-binary", "referable", "--label-scheme", "any")
    check(code == 1 and "scores a classifier of the 5 grades" in err, f"binary model: exit {code}\n{err}")
    # Messidor-1: the same images graded on its 0-3 scale.
    m1 = os.path.join(data, "Annotation_Base11.csv")
    with open(m1, "w") as f:
        f.write("Image name,Ophthalmologic department,Retinopathy grade,Risk of macular edema \n")
        for name, level in read_csv(os.path.join(data, "labels.csv"))[1:]:
            f.write(f"{name}.png,Service Ophtalmologie Lariboisiere,{min(int(level), 3)},0\n")
    code, _, err = run(*base, "--labels", m1, "--out", os.path.join(tmp, "m1_grades"))
    check(code == 1 and "holds Messidor-1 grades (0-3" in err and "--as-binary" in err,
          f"Messidor-1 on the grade scale: exit {code}\n{err}")
    m1_out = os.path.join(tmp, "m1")
    run(*base, "--labels", m1, "--out", m1_out, "--as-binary", "referable", expect=0)
    res, _, _ = outputs(m1_out)
    check(res["as_binary"] == "referable>=2" and res["referable"]["auc"]["point"] == g_res["referable"]["auc"]["point"],
          f"Messidor-1 as referable: {res}")
    # robustness --as-binary on Messidor-1: the clean row's AUC is the evaluation's; on the grade
    # scale it is the same error as evaluate's.
    base_rob = ["robustness", "--data", data, "--labels", m1, "--weights", os.path.join(ft, "best.safetensors"),
                "--corruptions", "gaussian_noise", "--severities", "1", *small]
    code, _, err = run(*base_rob, "--out", os.path.join(tmp, "rob_grades"))
    check(code == 1 and "holds Messidor-1 grades (0-3" in err, f"robustness on Messidor-1 grades: exit {code}\n{err}")
    rob = os.path.join(tmp, "rob")
    run(*base_rob, "--out", rob, "--as-binary", "referable", expect=0)
    rows = read_csv(os.path.join(rob, "robustness.csv"))
    clean = dict(zip(rows[0], next(r for r in rows[1:] if r[0] == "clean")))
    with open(os.path.join(rob, "config.json")) as f:
        check(json.load(f)["as_binary"] == "referable", "robustness config.json: as_binary")
    check(abs(float(clean["referable_auc"]) - g_res["referable"]["auc"]["point"]) < 1e-12 and
          abs(float(clean["kappa"]) - res["quadratic_weighted_kappa"]["point"]) < 1e-12,
          f"robustness --as-binary clean row {clean} vs evaluate {res['referable']['auc']}")


def case_robustness(tmp):
    """A fine-tuned classifier under two corruptions at two severities: robustness.csv holds the clean
    row and the four others with consistent values; a second run in the same folder resumes (the file
    stays as it was); a run without the decoded-image cache (--decode-cache-mb 0) gives the same bytes,
    and resuming with another cache size is not refused; a run against its own robustness.csv as
    reference has corruption errors of 1 and the same rows bitwise; an unknown corruption or severity
    is a usage error naming it."""
    data = os.path.join(tmp, "data")
    run("generate", "--out", data, "--count", "24", "--size", "40", "--seed", "3", expect=0)
    small = ["--size", "32", "--width", "0.25", "--small-stem", "--batch-size", "8", "--threads", "1",
             "--device", "cpu"]
    ft = os.path.join(tmp, "ft")
    run("finetune", "--data", data, "--out", ft, "--epochs", "1", *small, expect=0)
    out = os.path.join(tmp, "rob")
    base = ["robustness", "--data", data, "--weights", os.path.join(ft, "best.safetensors"),
            "--split", os.path.join(ft, "split.csv"), *small]
    args = [*base, "--corruptions", "gaussian_noise,contrast", "--severities", "1,5"]
    run(*args, "--out", out, expect=0)
    with open(os.path.join(out, "robustness.csv")) as f:
        text = f.read()
    lines = text.splitlines()
    check(lines[0] == "corruption,severity,images,accuracy,error,kappa,referable_auc", f"header: {lines[0]}")
    rows = [line.split(",") for line in lines[1:]]
    keys = [(r[0], r[1]) for r in rows]
    check(keys == [("clean", "0"), ("gaussian_noise", "1"), ("gaussian_noise", "5"), ("contrast", "1"),
                   ("contrast", "5")], f"rows: {keys}")
    for r in rows:
        images, acc, err = int(r[2]), float(r[3]), float(r[4])
        check(images > 0 and images == int(rows[0][2]), f"images: {r}")
        check(0.0 <= acc <= 1.0 and abs(err - (1.0 - acc)) < 1e-12, f"accuracy / error: {r}")
    run(*args, "--out", out, expect=0)
    with open(os.path.join(out, "robustness.csv")) as f:
        check(f.read() == text, "a finished robustness run changed its results when run again")
    with open(os.path.join(out, "log.txt")) as f:
        log = f.read()
    n = int(rows[0][2])
    check(f"decode cache held {n} of {n} images" in log, f"no decode cache line for {n} images:\n{log}")
    # --save-examples: the first images as the model sees them (clean, and per corruption and
    # severity), at the decode size; the results do not change.
    ex = os.path.join(tmp, "rob_examples")
    run(*base, "--corruptions", "gaussian_noise,halo", "--severities", "1,5", "--save-examples", "2", "--out", ex,
        expect=0)
    names = sorted(os.listdir(os.path.join(ex, "examples")))
    check(len(names) == 2 * (1 + 2 * 2) and all(n.endswith(".png") for n in names), f"examples: {names}")
    clean = [n for n in names if n.startswith("clean_0_")]
    check(len(clean) == 2, f"clean examples: {names}")
    image = clean[0][len("clean_0_"):]
    w, h, ch, clean_rows = read_png(os.path.join(ex, "examples", clean[0]))
    check((w, h, ch) == (37, 37, 3), f"example size {w}x{h}x{ch}: the decode size of --size 32 is 37")
    _, _, _, noisy = read_png(os.path.join(ex, "examples", "gaussian_noise_5_" + image))
    check(noisy != clean_rows, "gaussian_noise 5 left the example unchanged")
    _, _, _, halo = read_png(os.path.join(ex, "examples", "halo_5_" + image))
    dark = [(y, x) for y in range(h) for x in range(w) if max(clean_rows[y][3 * x:3 * x + 3]) <= 2]
    check(dark and all(halo[y][3 * x:3 * x + 3] == clean_rows[y][3 * x:3 * x + 3] for y, x in dark),
          "halo changed the black surround of the example")
    with open(os.path.join(ex, "robustness.csv")) as f:
        rows_ex = {tuple(r.split(",")[:2]): r for r in f.read().splitlines()[1:]}
    for r in text.splitlines()[1:]:
        key = tuple(r.split(",")[:2])
        if key in rows_ex:
            check(rows_ex[key] == r, f"--save-examples changed a row: {rows_ex[key]} vs {r}")
    svg = read_svg(os.path.join(out, "robustness.svg"))
    titles = [t.text for p in svg_elements(svg, "svg", "panel") for t in p.findall(SVG + "text")
              if t.text in ("gaussian_noise", "contrast")]
    check(titles == ["gaussian_noise", "contrast"], f"robustness.svg panels: {titles}")
    drawn = svg_elements(svg, "polyline", "series")
    check(len(drawn) == 4 and all(len(l.get("points").split()) == 2 for l in drawn),
          f"robustness.svg: per panel the model's 2 severities and its clean line: {len(drawn)} lines")
    # The decoded-image cache does not change the results: without it (every image decoded on every
    # pass) the rows are the same bytes, and the flag is not a setting a resumed run compares.
    uncached = os.path.join(tmp, "rob_uncached")
    run(*args, "--decode-cache-mb", "0", "--out", uncached, expect=0)
    with open(os.path.join(uncached, "robustness.csv")) as f:
        check(f.read() == text, "robustness.csv differs with --decode-cache-mb 0")
    with open(os.path.join(uncached, "log.txt")) as f:
        check("decode cache held 0 of" in f.read(), "--decode-cache-mb 0 stored images")
    # Cut back to the clean row and one more, as if killed: resumed with the cache on, the passes it
    # computes fill the cache themselves and give the same bytes.
    with open(os.path.join(uncached, "robustness.csv"), "w") as f:
        f.write("\n".join(lines[:3]) + "\n")
    run(*args, "--decode-cache-mb", "1", "--out", uncached, expect=0)
    with open(os.path.join(uncached, "robustness.csv")) as f:
        check(f.read() == text, "a run resumed with another --decode-cache-mb changed its results")
    # A number field that is not a number is refused on resume, naming the file, line and field
    # (std::stod read "0.5x" as 0.5 before).
    with open(os.path.join(uncached, "robustness.csv"), "w") as f:
        f.write("\n".join(lines[:2]) + "\n" + lines[2].rsplit(",", 1)[0] + ",0.5x\n")
    code, _, err = run(*args, "--out", uncached)
    check(code == 1 and "robustness.csv:3" in err and "referable_auc" in err and "0.5x" in err,
          f"a malformed robustness.csv: exit {code}\n{err}")
    code, _, err = run(*base, "--decode-cache-mb", "-1", "--out", os.path.join(tmp, "bad"))
    check(code == 2 and "decode-cache-mb" in err, f"negative --decode-cache-mb: exit {code}\n{err}")
    again = os.path.join(tmp, "rob_ref")
    run(*args, "--out", again, "--reference", os.path.join(out, "robustness.csv"), expect=0)
    with open(os.path.join(again, "robustness.csv")) as f:
        check(f.read() == text, "the same settings gave other results (not deterministic)")
    with open(os.path.join(again, "robustness.json")) as f:
        report = json.load(f)
    for name, c in report["corruptions"].items():
        if c["mean_error"] > 0:
            check(c["ce"] == 1.0, f"{name}: CE against itself is {c['ce']}")
    code, _, err = run(*base, "--corruptions", "gaussian_nois", "--out", os.path.join(tmp, "bad"))
    check(code == 2 and "gaussian_nois" in err, f"unknown corruption: exit {code}\n{err}")
    code, _, err = run(*base, "--severities", "1,6", "--out", os.path.join(tmp, "bad"))
    check(code == 2 and "'6'" in err, f"bad severity: exit {code}\n{err}")


def case_names_with_commas(tmp):
    """Image names holding a comma and a quote (legal in file names and in a quoted labels.csv
    field), in a subfolder: the run folders' CSVs quote them (predictions.csv, split.csv,
    saliency.csv, saliency_by_size.csv), so csv readers, `fovea compare` and a resumed saliency run
    read them back, and the files named after an image (saliency maps, robustness examples) are flat
    names with '/' as %2F; a saliency.csv or best.json that is not what fovea wrote is an error naming
    the file."""
    import csv as csvmod
    data = os.path.join(tmp, "data")
    run("generate", "--out", data, "--count", "24", "--size", "40", "--seed", "3", "--masks", expect=0)
    old, odd = "synthetic_1_left", 'synthetic_1 "a",left'
    new = "sub/" + odd
    os.makedirs(os.path.join(data, "sub"))
    os.rename(os.path.join(data, "images", old + ".png"), os.path.join(data, new + ".png"))
    for kind in os.listdir(os.path.join(data, "masks")):
        mask = os.path.join(data, "masks", kind, f"{old}_{kind}.png")
        if os.path.exists(mask):
            os.rename(mask, os.path.join(data, "masks", kind, f"{odd}_{kind}.png"))
    for name in ("labels.csv", "lesions.csv"):
        with open(os.path.join(data, name), newline="") as f:
            rows = [[field.replace("masks/" + r[1] + "/" + old, "masks/" + r[1] + "/" + odd).replace(old, new)
                     if len(r) > 1 else field for field in r] for r in csvmod.reader(f)]
        rows = rows[:1] + sorted(rows[1:], key=lambda r: r[0].replace(".png", "") != new)  # the odd one first
        with open(os.path.join(data, name), "w", newline="") as f:
            csvmod.writer(f, lineterminator="\n").writerows(rows)

    def read_rows(path):
        with open(path, newline="") as f:
            return list(csvmod.reader(f))

    small = ["--size", "32", "--width", "0.25", "--small-stem", "--batch-size", "8", "--threads", "1",
             "--device", "cpu"]
    ft = os.path.join(tmp, "ft")
    run("finetune", "--data", data, "--out", ft, "--epochs", "1", *small, expect=0)
    check(any(r[0] == new for r in read_rows(os.path.join(ft, "split.csv"))), "split.csv lacks the image")
    ev = os.path.join(tmp, "ev")
    run("evaluate", "--data", data, "--weights", os.path.join(ft, "best.safetensors"), "--out", ev, *small,
        expect=0)
    pred = read_rows(os.path.join(ev, "predictions.csv"))
    check(all(len(r) == 8 for r in pred), f"predictions.csv rows of other lengths: {[len(r) for r in pred]}")
    check([r[0] for r in pred].count(new) == 1, "predictions.csv: the image's name is not one field")
    _, out, _ = run("compare", ev, ev, expect=0)
    check("24" in out, f"compare of an evaluation with itself:\n{out}")

    sal = os.path.join(tmp, "sal")
    args = ["saliency", "--data", data, "--masks", os.path.join(data, "lesions.csv"), "--weights",
            os.path.join(ft, "best.safetensors"), "--methods", "gradient", "--out", sal, *small]
    run(*args, expect=0)
    maps = os.path.join(sal, "maps", "sub%2F" + odd)
    check(os.path.exists(maps + "_gradient.png") and os.path.exists(maps + ".safetensors"),
          f"saliency maps of the image in sub/: {sorted(os.listdir(os.path.join(sal, 'maps')))}")
    check(read_safetensors(maps + ".safetensors")[0].get("fovea.image") == new, "the maps' fovea.image")
    rob = os.path.join(tmp, "rob")
    run("robustness", "--data", data, "--weights", os.path.join(ft, "best.safetensors"), "--corruptions",
        "halo", "--severities", "1", "--save-examples", "1", "--out", rob, *small, expect=0)
    examples = sorted(os.listdir(os.path.join(rob, "examples")))
    check(examples == ["clean_0_sub%2F" + odd + ".png", "halo_1_sub%2F" + odd + ".png"], f"examples: {examples}")
    texts = {}
    for name, fields in (("saliency.csv", 9), ("saliency_by_size.csv", 10)):
        rows = read_rows(os.path.join(sal, name))
        check(all(len(r) == fields for r in rows), f"{name}: rows of other lengths than {fields}")
        check(any(r[0] == new for r in rows), f"{name}: no row of the image")
        with open(os.path.join(sal, name)) as f:
            texts[name] = f.read()
    # Resumed (the same command again, and again after the last image's rows were cut off): the same
    # files, byte for byte.
    run(*args, expect=0)
    for name, text in texts.items():
        with open(os.path.join(sal, name)) as f:
            check(f.read() == text, f"{name} changed when the finished run was run again")
    lines = texts["saliency.csv"].splitlines()
    last = next(csvmod.reader([lines[-1]]))[0]
    with open(os.path.join(sal, "saliency.csv"), "w") as f:
        f.write("".join(l + "\n" for l in lines if next(csvmod.reader([l]))[0] != last))
    run(*args, expect=0)
    for name, text in texts.items():
        with open(os.path.join(sal, name)) as f:
            check(f.read() == text, f"{name} differs after resuming without the image '{last}'")
    # A number field that is not a number (read as its prefix before) is refused, naming file, line, field.
    with open(os.path.join(sal, "saliency.csv"), "w") as f:
        f.write(lines[0] + "\n" + lines[1].rsplit(",", 1)[0] + ",0.5x\n")
    code, _, err = run(*args)
    check(code == 1 and "saliency.csv:2" in err and "pointing_game" in err and "0.5x" in err,
          f"a malformed saliency.csv: exit {code}\n{err}")
    # A best.json that is not one: resuming the fine-tuning run names it.
    with open(os.path.join(ft, "best.json"), "w") as f:
        f.write('{"kappa": "high"}\n')
    code, _, err = run("finetune", "--data", data, "--out", ft, "--epochs", "1", *small)
    check(code == 1 and "best.json" in err and "kappa" in err, f"a malformed best.json: exit {code}\n{err}")


def case_run_folder_in_use(tmp):
    """A second run into a folder a running fovea process holds is refused at once (exit 1), naming
    the holder's pid and command, whatever the second command is; the folder is usable again as soon
    as the holder dies (SIGKILL: no stale lock)."""
    data = os.path.join(tmp, "data")
    run("generate", "--out", data, "--count", "24", "--size", "40", "--seed", "3", expect=0)
    small = ["--size", "32", "--width", "0.25", "--small-stem", "--batch-size", "8", "--threads", "1",
             "--device", "cpu"]
    ft = os.path.join(tmp, "ft")
    long_run = [FOVEA, "finetune", "--data", data, "--out", ft, "--epochs", "100000", *small]
    p = subprocess.Popen(long_run, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        lock = os.path.join(ft, ".fovea.lock")
        deadline = time.time() + 60
        while time.time() < deadline and p.poll() is None:
            if os.path.exists(lock) and f"pid {p.pid} " in open(lock).read():
                break
            time.sleep(0.05)
        if p.poll() is not None:
            fail(f"the first run ended early (exit {p.returncode}): {p.stderr.read().decode()}")
        for second in (["finetune", "--data", data, "--out", ft, "--epochs", "100000", *small],
                       # any existing file passes evaluate's first check; the lock comes before the weights are read
                       ["evaluate", "--data", data, "--weights", os.path.join(data, "labels.csv"), "--out", ft, *small]):
            code, _, err = run(*second)
            check(code == 1 and "is in use by another fovea process" in err and f"pid {p.pid} " in err and
                  "fovea finetune" in err, f"a second {second[0]} into a busy folder: exit {code}\n{err}")
        check(p.poll() is None, "the first run stopped when a second one was refused")
        with open(os.path.join(ft, "config.json")) as f:
            check(json.load(f)["command"] == "finetune", "the refused run rewrote config.json")
    finally:
        p.kill()
        p.wait()
    run("finetune", "--data", data, "--out", ft, "--epochs", "1", "--no-resume", *small, expect=0)


def case_full_disk_and_resume(tmp):
    """A fine-tuning run whose disk fills (simulated with RLIMIT_FSIZE at 1 MB, which stops the first
    weights file; SIGXFSZ ignored so the write fails instead of killing the process) stops with exit 1
    naming the file and the system error, leaves no temp file behind, and run again with room ends
    with the same metrics, weights and predictions as a run that never failed."""
    import resource
    data = os.path.join(tmp, "data")
    run("generate", "--out", data, "--count", "24", "--size", "40", "--seed", "3", expect=0)
    small = ["--size", "32", "--width", "0.25", "--small-stem", "--batch-size", "8", "--threads", "1",
             "--device", "cpu"]
    full, whole = os.path.join(tmp, "full"), os.path.join(tmp, "whole")
    command = ["finetune", "--data", data, "--epochs", "2", *small]

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    p = subprocess.run([FOVEA, *command, "--out", full], capture_output=True, text=True, timeout=300,
                       preexec_fn=small_disk)
    check(p.returncode == 1 and "cannot write" in p.stderr and ".safetensors" in p.stderr and
          "File too large" in p.stderr, f"a full disk: exit {p.returncode}\n{p.stderr}")
    left = [n for root, _, names in os.walk(full) for n in names if ".tmp." in n]
    check(not left, f"temp files left behind: {left}")
    run(*command, "--out", full, expect=0)
    run(*command, "--out", whole, expect=0)
    for name in ("metrics.jsonl", "metrics.csv", "best.safetensors", "predictions.csv", "results.json"):
        with open(os.path.join(full, name), "rb") as a, open(os.path.join(whole, name), "rb") as b:
            check(a.read() == b.read(), f"{name} differs from an uninterrupted run's after the disk filled")


def case_skip_bad_images(tmp):
    """Without --skip-bad-images a missing or corrupt image stops the run, named; with it, the images
    that are missing, not images or truncated are dropped before the split and listed in
    skipped_images.csv, and an evaluation with the flag sees the same images."""
    import csv as csvmod
    data = os.path.join(tmp, "data")
    run("generate", "--out", data, "--count", "24", "--size", "40", "--seed", "3", expect=0)
    images = os.path.join(data, "images")
    with open(os.path.join(images, "synthetic_3_left.png"), "w") as f:
        f.write("not an image")
    with open(os.path.join(images, "synthetic_4_left.png"), "rb") as f:
        head = f.read(300)
    with open(os.path.join(images, "synthetic_4_left.png"), "wb") as f:
        f.write(head)
    os.remove(os.path.join(images, "synthetic_5_right.png"))
    small = ["--size", "32", "--width", "0.25", "--small-stem", "--batch-size", "8", "--threads", "2",
             "--device", "cpu"]
    ft = os.path.join(tmp, "ft")
    code, _, err = run("finetune", "--data", data, "--out", ft, "--epochs", "1", *small)
    check(code == 1 and "synthetic_5_right" in err and "not found" in err, f"a missing image: exit {code}\n{err}")
    _, out, _ = run("finetune", "--data", data, "--out", ft, "--epochs", "1", "--skip-bad-images", *small, expect=0)
    check("3 of 24 images skipped" in out, f"no count of the skipped images:\n{out}")
    with open(os.path.join(ft, "skipped_images.csv"), newline="") as f:
        rows = list(csvmod.reader(f))
    check(rows[0] == ["image", "reason"], f"skipped_images.csv header {rows[0]}")
    reasons = {r[0]: r[1] for r in rows[1:]}
    check(sorted(reasons) == ["synthetic_3_left", "synthetic_4_left", "synthetic_5_right"], f"skipped: {rows}")
    check("not found" in reasons["synthetic_5_right"] and "unknown image type" in reasons["synthetic_3_left"] and
          "truncated" in reasons["synthetic_4_left"] and not any(".hpp:" in r for r in reasons.values()),
          f"reasons: {reasons}")
    with open(os.path.join(ft, "split.csv"), newline="") as f:
        split = {r[0]: r[1] for r in list(csvmod.reader(f))[1:]}
    check(len(split) == 21 and not set(reasons) & set(split), f"split.csv: {len(split)} images")
    with open(os.path.join(ft, "config.json")) as f:
        check(json.load(f).get("skip_bad_images") is True, "config.json lacks skip_bad_images")
    ev = os.path.join(tmp, "ev")
    run("evaluate", "--data", data, "--weights", os.path.join(ft, "best.safetensors"), "--split",
        os.path.join(ft, "split.csv"), "--out", ev, "--skip-bad-images", *small, expect=0)
    with open(os.path.join(ev, "predictions.csv"), newline="") as f:
        predicted = [r[0] for r in list(csvmod.reader(f))[1:]]
    check(sorted(predicted) == sorted(i for i, s in split.items() if s == "test"),
          f"evaluate saw {predicted}, the test split is {[i for i, s in split.items() if s == 'test']}")
    code, _, err = run("evaluate", "--data", data, "--weights", os.path.join(ft, "best.safetensors"), "--split",
                       os.path.join(ft, "split.csv"), "--out", os.path.join(tmp, "ev2"), *small)
    check(code == 1 and "synthetic_5_right" in err, f"evaluate without the flag: exit {code}\n{err}")
    # fovea features (the study's feature stage) takes the flag too: the test split without the bad images
    _, out, _ = run("features", "--arch", "resnet18", "--width", "0.25", "--small-stem", "--weights",
                    os.path.join(ft, "best.safetensors"), "--data", data, "--split", os.path.join(ft, "split.csv"),
                    "--size", "32", "--device", "cpu", "--skip-bad-images", "--out", os.path.join(tmp, "feat"),
                    expect=0)
    check("3 images skipped" in out, f"features: no count of the skipped images:\n{out}")


def case_image_cache(tmp):
    """--image-cache DIR: the first run decodes each image it uses once into DIR, a second run with the
    same settings reads every image from it (no miss) and trains to the same bits; a touched source
    image misses and is decoded again; the setting is in config.json."""
    data = os.path.join(tmp, "data")
    run("generate", "--out", data, "--count", "24", "--size", "40", "--seed", "3", expect=0)
    small = ["--size", "32", "--width", "0.25", "--small-stem", "--batch-size", "8", "--threads", "2",
             "--device", "cpu"]
    cache = os.path.join(tmp, "cache")
    a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
    run("finetune", "--data", data, "--out", a, "--epochs", "2", "--image-cache", cache, *small, expect=0)
    files = sorted(os.listdir(cache))
    check(0 < len(files) <= 24 and all(f.endswith(".fpc") for f in files), f"cache files: {files}")
    with open(os.path.join(a, "config.json")) as f:
        check(json.load(f).get("image_cache") == cache, "config.json lacks image_cache")
    run("finetune", "--data", data, "--out", b, "--epochs", "2", "--image-cache", cache, *small, expect=0)
    with open(os.path.join(b, "log.txt")) as f:
        log = f.read()
    check(re.search(r"image cache .*: [1-9][0-9]* hits, 0 misses", log), f"the second run missed:\n{log}")
    for name in ("best.safetensors", "predictions.csv", "metrics.jsonl"):
        with open(os.path.join(a, name), "rb") as x, open(os.path.join(b, name), "rb") as y:
            check(x.read() == y.read(), f"{name}: the cached run differs from the run that filled the cache")
    # every image through evaluate, one source touched: that one misses
    image = os.path.join(data, "images", "synthetic_0_left.png")
    st = os.stat(image)
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    ev = os.path.join(tmp, "ev")
    run("evaluate", "--data", data, "--weights", os.path.join(a, "best.safetensors"), "--image-cache", cache,
        "--out", ev, *small, expect=0)
    with open(os.path.join(ev, "log.txt")) as f:
        log = f.read()
    m = re.search(r"image cache .*: (\d+) hits, (\d+) misses", log)
    check(m and int(m.group(1)) + int(m.group(2)) == 24 and int(m.group(2)) == 24 - len(files) + 1,
          f"evaluate over 24 images with {len(files)} cached and one touched:\n{log}")
    # robustness reads its clean images through the cache too: its clean row is evaluate's
    rob = os.path.join(tmp, "rob")
    run("robustness", "--data", data, "--weights", os.path.join(a, "best.safetensors"), "--image-cache", cache,
        "--corruptions", "contrast", "--severities", "1", "--out", rob, *small, expect=0)
    with open(os.path.join(rob, "robustness.csv")) as f:
        clean = f.read().splitlines()[1].split(",")
    with open(os.path.join(ev, "results.json")) as f:
        result = json.load(f)
    check(clean[0] == "clean" and float(clean[3]) == result["accuracy"]["point"] and
          float(clean[5]) == result["quadratic_weighted_kappa"]["point"],
          f"robustness clean row {clean} against evaluate's accuracy {result['accuracy']['point']}, "
          f"kappa {result['quadratic_weighted_kappa']['point']}")


def case_preprocess(tmp):
    """--preprocess fov / graham (field-of-view crop, Ben Graham's normalisation) through every driver:
    recorded in config.json, a resume with another mode refused naming it, a bad value a usage error;
    evaluate's inputs change with it; robustness's clean row equals evaluate's under graham (corruptions
    come before Ben Graham's step there); the image cache keys the mode; saliency scores in the field
    of view's frame; features records it."""
    data = os.path.join(tmp, "data")
    run("generate", "--out", data, "--count", "24", "--size", "48", "--seed", "3", "--masks", expect=0)
    small = ["--size", "32", "--width", "0.25", "--small-stem", "--batch-size", "8", "--threads", "2",
             "--device", "cpu"]
    ft = os.path.join(tmp, "ft")
    run("finetune", "--data", data, "--out", ft, "--epochs", "1", "--preprocess", "graham", *small, expect=0)
    with open(os.path.join(ft, "config.json")) as f:
        check(json.load(f).get("preprocess") == "graham", "config.json lacks preprocess: graham")
    code, _, err = run("finetune", "--data", data, "--out", ft, "--epochs", "1", "--preprocess", "fov", *small)
    check(code == 1 and 'preprocess: "graham" before, "fov" now' in err, f"resume with another mode: {code} {err}")
    code, _, err = run("finetune", "--data", data, "--out", os.path.join(tmp, "bad"), "--preprocess", "ben", *small)
    check(code == 2 and "resize" in err and "graham" in err and "ben" in err, f"bad --preprocess: {code} {err}")
    weights = os.path.join(ft, "best.safetensors")
    evaluated = {}
    for mode in ("graham", "resize"):
        ev = os.path.join(tmp, "ev_" + mode)
        run("evaluate", "--data", data, "--weights", weights, "--out", ev, "--preprocess", mode, *small, expect=0)
        with open(os.path.join(ev, "results.json")) as f:
            result = json.load(f)
        with open(os.path.join(ev, "predictions.csv")) as f:
            evaluated[mode] = (result, f.read())
    check(evaluated["graham"][1] != evaluated["resize"][1], "evaluate's predictions do not depend on --preprocess")
    # the weights say how they were trained; a run with another mode notes it in its log
    meta, _ = read_safetensors(weights)
    check(meta.get("fovea.preprocess") == "graham", f"best.safetensors metadata: {meta}")
    with open(os.path.join(tmp, "ev_resize", "log.txt")) as f:
        log = f.read()
    check("was trained with --preprocess graham, this run uses --preprocess resize" in log, f"no note:\n{log}")
    with open(os.path.join(tmp, "ev_graham", "log.txt")) as f:
        check("note:" not in f.read(), "a note although the modes agree")
    rob = os.path.join(tmp, "rob")
    run("robustness", "--data", data, "--weights", weights, "--preprocess", "graham", "--corruptions",
        "contrast,uneven_illumination", "--severities", "2", "--save-examples", "1", "--out", rob, *small, expect=0)
    with open(os.path.join(rob, "robustness.csv")) as f:
        rows = [line.split(",") for line in f.read().splitlines()[1:]]
    result = evaluated["graham"][0]
    check(rows[0][0] == "clean" and float(rows[0][3]) == result["accuracy"]["point"] and
          float(rows[0][6]) == result["referable"]["auc"]["point"],
          f"robustness clean row {rows[0]} against evaluate's accuracy {result['accuracy']['point']}, "
          f"AUC {result['referable']['auc']['point']}")
    check([r[0] for r in rows] == ["clean", "contrast", "uneven_illumination"], f"rows: {rows}")
    # the examples are what the model sees: Ben Graham's gray surround (0.5 -> 128) in the corners
    for name in ("clean_0", "contrast_2", "uneven_illumination_2"):
        w, h, channels, pixels = read_png(os.path.join(rob, "examples", name + "_synthetic_0_left.png"))
        check(all(abs(pixels[y][x * channels] - 128) <= 1 for y in (0, h - 1) for x in (0, w - 1)),
              f"{name}: corners are not Ben Graham's gray")
    # the image cache keys the mode: graham and resize files side by side, a second graham run all hits
    cache = os.path.join(tmp, "cache")
    for mode, out in (("graham", "c1"), ("resize", "c2"), ("graham", "c3")):
        run("evaluate", "--data", data, "--weights", weights, "--image-cache", cache, "--preprocess", mode,
            "--out", os.path.join(tmp, out), *small, expect=0)
    check(len(os.listdir(cache)) == 48, f"cache files for two modes of 24 images: {len(os.listdir(cache))}")
    with open(os.path.join(tmp, "c3", "log.txt")) as f:
        log = f.read()
    check(re.search(r"image cache .*: 24 hits, 0 misses", log), f"the second graham run missed:\n{log}")
    # saliency: in the field of view's frame the disc fills more of the image than in the padded photo
    fov_pixels = {}
    for mode in ("resize", "fov"):
        out = os.path.join(tmp, "sal_" + mode)
        run("saliency", "--data", data, "--masks", os.path.join(data, "lesions.csv"), "--weights", weights,
            "--count", "2", "--methods", "gradient", "--preprocess", mode, "--out", out, *small, expect=0)
        with open(os.path.join(out, "saliency.csv")) as f:
            rows = [line.split(",") for line in f.read().splitlines()[1:]]
        check(rows and all(0 < int(r[4]) <= int(r[5]) for r in rows), f"saliency {mode} rows: {rows}")
        fov_pixels[mode] = {r[0]: int(r[5]) for r in rows}
    check(fov_pixels["fov"].keys() == fov_pixels["resize"].keys() and
          all(fov_pixels["fov"][k] > fov_pixels["resize"][k] for k in fov_pixels["fov"]),
          f"field-of-view pixels per image, fov against resize: {fov_pixels}")
    spectra = {}
    for mode in ("graham", "resize"):
        out = os.path.join(tmp, "feat_" + mode)
        features(weights, out, "--data", data, "--count", "8", "--layers", "conv1", "--preprocess", mode)
        with open(os.path.join(out, "features.json")) as f:
            result = json.load(f)
        check(result["data"]["preprocess"] == mode, str(result["data"]))
        spectra[mode] = result["layers"]
    check(spectra["graham"] != spectra["resize"], "features: the spectra do not depend on --preprocess")
    # predict --preprocess graham feeds the model what evaluate gave it: the same probabilities
    images = [os.path.join(data, "images", f"synthetic_{i}_left.png") for i in (0, 1)]
    out = os.path.join(tmp, "p.json")
    run("predict", "--arch", "resnet18", "--num-classes", "5", "--width", "0.25", "--small-stem", "--size", "32",
        "--normalization", "dr", "--weights", weights, "--preprocess", "graham", "--out", out,
        *[x for image in images for x in ("--image", image)], expect=0)
    with open(out) as f:
        predicted = json.load(f)
    check(predicted["preprocess"] == "graham", str(predicted)[:200])
    _, _, err = run("predict", "--arch", "resnet18", "--num-classes", "5", "--width", "0.25", "--small-stem",
                    "--size", "32", "--weights", weights, "--out", os.path.join(tmp, "p2.json"), "--image", images[0],
                    expect=0)
    check("was trained with --preprocess graham, this run uses --preprocess resize" in err, f"predict: {err}")
    rows = {line.split(",")[0]: [float(v) for v in line.split(",")[3:]]
            for line in evaluated["graham"][1].splitlines()[1:]}
    for image, r in zip(images, predicted["images"]):
        want = rows[os.path.basename(image)[:-4]]
        check(all(abs(p - q) <= 1e-6 for p, q in zip(r["probabilities"], want)),
              f"{image}: predict {r['probabilities']}, evaluate {want}")


def require_gpu():
    """Exits 77 (skipped) unless the fovea program was built and sees a usable GPU."""
    if not os.path.exists(FOVEA):
        print(f"SKIP: {FOVEA} was not built (gpu-check: add fovea_cli to GPU_CHECK_TARGETS)")
        sys.exit(77)
    _, out, _ = run("summary", "--arch", "resnet18", expect=0)
    if out.startswith("CPU only"):
        print("SKIP: no usable GPU: " + out.splitlines()[0])
        sys.exit(77)


def case_robustness_devices(tmp):
    """With a usable GPU: fovea robustness --device cuda corrupts the images as --device cpu does (the
    CUDA corruption kernels, the fundus masks and the loader's per-batch transform on the device):
    every corruption at severities 1 and 5, the --save-examples PNGs of 3 images equal within one
    8-bit level (a few pixels may differ more: a shot-noise draw across an inversion step). Exit 77
    (skipped) on a machine without one, or when the fovea program was not built."""
    require_gpu()
    data = os.path.join(tmp, "data")
    run("generate", "--out", data, "--count", "12", "--size", "64", "--seed", "8", expect=0)
    weights = os.path.join(tmp, "w.safetensors")
    run("init", "--arch", "resnet18", "--num-classes", "5", "--width", "0.25", "--small-stem", "--seed", "1",
        "--out", weights, expect=0)
    outs = {}
    for device in ("cpu", "cuda"):
        outs[device] = os.path.join(tmp, device)
        run("robustness", "--data", data, "--weights", weights, "--size", "48", "--width", "0.25", "--small-stem",
            "--batch-size", "4", "--threads", "2", "--device", device, "--corruptions", "all", "--severities", "1,5",
            "--save-examples", "3", "--out", outs[device], expect=0)
    with open(os.path.join(outs["cpu"], "robustness.json")) as f:
        corruptions = len(json.load(f)["corruptions"])
    check(corruptions >= 20, f"--corruptions all ran {corruptions} corruptions")
    names = sorted(os.listdir(os.path.join(outs["cpu"], "examples")))
    check(names == sorted(os.listdir(os.path.join(outs["cuda"], "examples"))) and
          len(names) == 3 * (1 + corruptions * 2), f"examples: {len(names)} for {corruptions} corruptions")
    for name in names:
        a = read_png(os.path.join(outs["cpu"], "examples", name))
        b = read_png(os.path.join(outs["cuda"], "examples", name))
        check(a[:3] == b[:3], f"{name}: {a[:3]} vs {b[:3]}")
        diffs = [abs(x - y) for ra, rb in zip(a[3], b[3]) for x, y in zip(ra, rb)]
        far = sum(d > 1 for d in diffs)
        check(far <= max(2, len(diffs) // 1000),
              f"{name}: {far} of {len(diffs)} values differ by more than one level (max {max(diffs)})")


def case_deterministic_devices(tmp):
    """With a usable GPU: two fine-tuning runs with --deterministic (cuDNN's reproducible algorithms
    only; fovea's own kernels use no float atomics) write the same weights, metrics and predictions
    bit for bit, with TF32 and with --no-tf32. Exit 77 (skipped) without a GPU."""
    require_gpu()
    data = os.path.join(tmp, "data")
    run("generate", "--out", data, "--count", "24", "--size", "64", "--seed", "9", expect=0)
    for extra in ([], ["--no-tf32"]):
        outs = []
        for k in range(2):
            outs.append(os.path.join(tmp, f"run{k}{'_fp32' if extra else ''}"))
            run("finetune", "--data", data, "--size", "48", "--width", "0.25", "--small-stem", "--epochs", "2",
                "--batch-size", "8", "--threads", "2", "--device", "cuda", "--deterministic", *extra,
                "--out", outs[-1], expect=0)
        for name in ("best.safetensors", "metrics.jsonl", "predictions.csv"):
            with open(os.path.join(outs[0], name), "rb") as a, open(os.path.join(outs[1], name), "rb") as b:
                check(a.read() == b.read(), f"--deterministic {' '.join(extra)}: the two runs differ in {name}")


def case_saliency(tmp):
    """Attribution maps of a fine-tuned classifier on synthetic images with lesion masks: a row per
    (image, method, lesion set) with scores in range, size bins, the summary, overlays and raw maps;
    the same run again gives the same bytes; an unknown method is a usage error naming it."""
    data = os.path.join(tmp, "data")
    run("generate", "--out", data, "--count", "16", "--size", "40", "--seed", "5", "--balanced", "--masks", expect=0)
    small = ["--size", "32", "--width", "0.25", "--small-stem", "--batch-size", "8", "--threads", "1",
             "--device", "cpu"]
    ft = os.path.join(tmp, "ft")
    run("finetune", "--data", data, "--out", ft, "--epochs", "1", *small, expect=0)
    base = ["saliency", "--data", data, "--masks", os.path.join(data, "lesions.csv"),
            "--weights", os.path.join(ft, "best.safetensors"), "--count", "3", "--ig-steps", "8",
            "--smoothgrad-samples", "4", "--randomization", "2", *small]
    out = os.path.join(tmp, "sal")
    run(*base, "--out", out, expect=0)
    with open(os.path.join(out, "saliency.csv")) as f:
        text = f.read()
    lines = text.splitlines()
    check(lines[0] == "image,method,target,lesion,lesion_pixels,fov_pixels,mass_inside,rank_accuracy,pointing_game",
          f"header: {lines[0]}")
    rows = [line.split(",") for line in lines[1:]]
    images = sorted({r[0] for r in rows})
    methods = sorted({r[1] for r in rows})
    check(len(images) == 3, f"images: {images}")
    check(methods == ["grad_cam", "gradient", "gradient_x_input", "integrated_gradients", "lrp", "smoothgrad"],
          f"methods: {methods}")
    check(any(r[3] == "MA+HE+EX" for r in rows), "no union row")
    for r in rows:
        mass, rank, point = (float(v) for v in r[6:9])
        check(0 < int(r[4]) <= int(r[5]), f"lesion and field-of-view pixels: {r}")
        check(0.0 <= mass <= 1.0 and 0.0 <= rank <= 1.0 and point in (0.0, 1.0), f"scores: {r}")
    with open(os.path.join(out, "saliency_by_size.csv")) as f:
        check(f.readline().startswith("image,method,lesion,min_area,max_area,components"), "size header")
    with open(os.path.join(out, "saliency.json")) as f:
        summary = json.load(f)
    check(summary["images"] == 3 and set(summary["methods"]) == set(methods), f"summary: {summary}")
    svg = read_svg(os.path.join(out, "saliency.svg"))
    panels = svg_elements(svg, "svg", "panel")
    check(len(panels) == 3, f"saliency.svg: mass / chance, by size, randomisation panels: {len(panels)}")
    check(len(svg_elements(panels[2], "polyline", "series")) == len(methods),
          "saliency.svg: one randomisation curve per method")
    # The chance level: the mean lesion share of the field of view, the same for every method.
    shares = [int(r[4]) / int(r[5]) for r in rows if r[1] == "gradient" and r[3] == "MA+HE+EX"]
    for m in methods:
        chance = summary["methods"][m]["MA+HE+EX"]["chance"]
        check(abs(chance - sum(shares) / len(shares)) < 1e-9, f"chance level of {m}: {chance} vs {shares}")
    for image in images:
        for m in methods:
            check(os.path.exists(os.path.join(out, "maps", f"{image}_{m}.png")), f"overlay {image} {m}")
        check(os.path.exists(os.path.join(out, "maps", f"{image}.safetensors")), f"raw maps {image}")
    # Raw maps: 3 channels per method, 1 for Grad-CAM (the upsampled class activation map).
    with open(os.path.join(out, "maps", f"{images[0]}.safetensors"), "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    check(header["lrp.raw"]["shape"] == [3, 32, 32] and header["grad_cam.raw"]["shape"] == [1, 32, 32],
          f"raw map shapes: {header}")
    # The randomisation check: a row per (method, stage, image) for the first 2 images, the stages
    # from the logits down (fc first, the stem last), scores in [-1, 1] or nan, and the summary.
    with open(os.path.join(out, "randomization.csv")) as f:
        rand = [line.split(",") for line in f.read().splitlines()]
    check(rand[0] == ["method", "stage", "image", "heatmap_spearman", "signed_spearman", "heatmap_ssim"],
          f"randomization header: {rand[0]}")
    stages = []
    for r in rand[1:]:
        if r[1] not in stages:
            stages.append(r[1])
    check(stages[0] == "fc" and stages[1] == "layer4.1" and stages[-1] == "conv1" and len(stages) == 10,
          f"randomisation stages: {stages}")
    check(len(rand) - 1 == len(methods) * 10 * 2, f"randomization rows: {len(rand) - 1}")
    for r in rand[1:]:
        for v in r[3:]:
            check(v == "nan" or -1.0 <= float(v) <= 1.0, f"randomization score: {r}")
    check(set(summary["randomization"]) == set(methods), f"randomization summary: {summary.get('randomization')}")
    # The same settings again, read from the first run's config.json (every key a flag of saliency).
    again = os.path.join(tmp, "sal2")
    run("saliency", "--config", os.path.join(out, "config.json"), "--out", again, expect=0)
    with open(os.path.join(again, "saliency.csv")) as f:
        check(f.read() == text, "the same settings gave other scores (not deterministic)")
    # An interrupted run (only the first image's rows written) resumes and ends with the same files.
    with open(os.path.join(again, "saliency.csv"), "w") as f:
        f.write("\n".join([lines[0]] + [line for line in lines[1:] if line.startswith(rows[0][0] + ",")]) + "\n")
    code, stdout, _ = run(*base, "--out", again, expect=0)
    check("1 images already scored" in stdout, "the rerun did not resume:\n" + stdout)
    for name in ("saliency.csv", "saliency_by_size.csv", "saliency.json"):
        with open(os.path.join(out, name)) as f1, open(os.path.join(again, name)) as f2:
            check(f1.read() == f2.read(), f"{name} differs after resuming")
    # A finished run started again reads its randomisation check back instead of running it again.
    code, stdout, _ = run(*base, "--out", out, expect=0)
    check("randomisation check read back" in stdout and "3 images already scored" in stdout,
          "a finished run redid its randomisation check:\n" + stdout)
    for name in ("saliency.json", "randomization.csv"):
        with open(os.path.join(out, name)) as f1, open(os.path.join(again, name)) as f2:
            check(f1.read() == f2.read(), f"{name} differs after resuming a finished run")
    code, _, err = run(*base, "--method", "gradcam", "--out", os.path.join(tmp, "bad"))
    check(code == 2 and "gradcam" in err, f"unknown method: exit {code}\n{err}")
    # A mask of another size than its photograph (another image's, or a resized copy) is an error
    # naming both sizes, not a silently stretched mask.
    import csv as csvmod
    with open(os.path.join(data, "lesions.csv"), newline="") as f:
        first = list(csvmod.reader(f))[1]
    mask = os.path.join(data, first[2])
    write_png(mask, 20, 12, lambda x, y: (255, 255, 255) if x == y else (0, 0, 0))
    code, _, err = run(*base, "--out", os.path.join(tmp, "bad_mask"))
    check(code == 1 and first[2] in err and "20 x 12" in err and "40 x 40" in err,
          f"a mask of another size: exit {code}\n{err}")


def case_drivers_bad_inputs(tmp):
    """Missing data folder, malformed labels, weights of another architecture: clear errors, exit 1,
    earlier outputs intact."""
    code, _, err = run("finetune", "--data", os.path.join(tmp, "nope"), "--out", os.path.join(tmp, "o"))
    check(code == 1 and "nope" in err, f"missing data folder: exit {code}, {err}")
    data = os.path.join(tmp, "data")
    os.makedirs(os.path.join(data, "images"))
    with open(os.path.join(data, "labels.csv"), "w") as f:
        f.write("image,level\n1_left,0\n1_right,x\n")
    code, _, err = run("finetune", "--data", data, "--out", os.path.join(tmp, "o2"))
    check(code == 1 and "labels.csv" in err, f"bad label row: exit {code}, {err}")
    code, _, err = run("finetune", "--data", os.path.join(data, "labels.csv"), "--out", os.path.join(tmp, "o3"))
    check(code == 1 and "is a file" in err and "--labels" in err, f"--data naming the CSV: exit {code}, {err}")
    code, _, err = run("finetune", "--data", data, "--labels", os.path.join(data, "images"), "--out",
                       os.path.join(tmp, "o4"))
    check(code == 1 and "is not a file" in err, f"--labels naming a folder: exit {code}, {err}")
    empty = os.path.join(tmp, "empty")
    os.makedirs(os.path.join(empty, "images"))
    code, _, err = run("pretrain", "--data", empty, "--out", os.path.join(tmp, "o5"))
    check(code == 1 and "no images in" in err, f"an empty data folder: exit {code}, {err}")
    with open(os.path.join(empty, "labels.csv"), "w") as f:
        f.write("image,level\n")
    code, _, err = run("finetune", "--data", empty, "--out", os.path.join(tmp, "o6"))
    check(code == 1 and "lists no images" in err, f"a label file without rows: exit {code}, {err}")
    os.remove(os.path.join(empty, "labels.csv"))
    write_png(os.path.join(empty, "images", "a.png"), 8, 8, lambda x, y: (x * 30, y * 30, 0))
    code, _, err = run("finetune", "--data", empty, "--out", os.path.join(tmp, "o7"))
    check(code == 1 and "have no labels" in err and "pretrain" in err, f"an unlabelled folder: exit {code}, {err}")
    weights = os.path.join(tmp, "r18.safetensors")
    run("init", "--arch", "resnet18", "--num-classes", "5", "--out", weights, expect=0)
    results = os.path.join(tmp, "ev")
    os.makedirs(results)
    with open(os.path.join(results, "results.json"), "w") as f:
        f.write("{\"earlier\": true}")
    write_png(os.path.join(data, "images", "1_left.png"), 8, 8, lambda x, y: (x * 30, y * 30, 0))
    with open(os.path.join(data, "labels.csv"), "w") as f:
        f.write("image,level\n1_left,0\n")
    code, _, err = run("evaluate", "--data", data, "--weights", weights, "--arch", "resnet50", "--out", results)
    check(code == 1 and "conv" in err, f"weights of another architecture: exit {code}, {err}")
    with open(os.path.join(results, "results.json")) as f:
        check(f.read() == "{\"earlier\": true}", "an earlier results.json was overwritten")
    # A split file that puts no image in the evaluated part names the file and the part.
    split = os.path.join(tmp, "all_train.csv")
    with open(split, "w") as f:
        f.write("image,split\n1_left,train\n")
    code, _, err = run("evaluate", "--data", data, "--weights", weights, "--split", split, "--out",
                       os.path.join(tmp, "ev_split"))
    check(code == 1 and "all_train.csv" in err and "to test" in err, f"an empty test split: exit {code}, {err}")


def read_safetensors(path):
    """(metadata dict, {name: raw bytes}) of a safetensors file."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    return meta, {k: blob[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in header.items()}


def latest_checkpoint(run_dir):
    try:
        with open(os.path.join(run_dir, "checkpoints", "latest")) as f:
            return os.path.join(run_dir, "checkpoints", f.read().strip())
    except OSError:
        return None


def kill_and_resume(tmp, command, kill_at_step):
    """Runs `fovea <command>` twice into two folders: once uninterrupted, once SIGKILLed as soon as its
    checkpoint at step >= kill_at_step exists (mid-epoch) and then run again with the same command,
    which resumes. Both must end with the same weights, metrics and results."""
    whole, killed = os.path.join(tmp, "whole"), os.path.join(tmp, "killed")
    run(*command, "--out", whole, expect=0)
    p = subprocess.Popen([FOVEA, *command, "--out", killed], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while p.poll() is None and time.time() < deadline:
        ckpt = latest_checkpoint(killed)
        if ckpt and int(os.path.basename(ckpt)[5:15]) >= kill_at_step:
            p.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    p.wait()
    check(p.returncode == -signal.SIGKILL,
          f"the run was not killed mid-way (exit {p.returncode}); make it longer\n{p.stderr.read().decode()}")
    p.stderr.close()
    meta, _ = read_safetensors(latest_checkpoint(killed))
    step, batch = int(meta["fovea.step"]), int(meta["fovea.batch_in_epoch"])
    check(batch != 0, f"the run was killed at an epoch boundary (step {step}), not mid-epoch")
    _, out, _ = run(*command, "--out", killed, expect=0)
    final_whole, final_killed = latest_checkpoint(whole), latest_checkpoint(killed)
    check(os.path.basename(final_whole) == os.path.basename(final_killed),
          f"final checkpoints differ: {final_whole} vs {final_killed}")
    _, tw = read_safetensors(final_whole)
    _, tk = read_safetensors(final_killed)
    check(sorted(tw) == sorted(tk), "the checkpoints hold different tensors")
    differing = [k for k in tw if tw[k] != tk[k]]
    check(not differing, f"resumed after a kill at step {step}: {len(differing)} tensors differ, e.g. {differing[:3]}")
    for name in ("metrics.jsonl", "metrics.csv"):
        with open(os.path.join(whole, name)) as a, open(os.path.join(killed, name)) as b:
            check(a.read() == b.read(), f"{name} differs between the uninterrupted and the resumed run")
    return whole, killed, step


def case_finetune_killed_and_resumed(tmp):
    """A fine-tuning run SIGKILLed mid-epoch and started again ends bit for bit where an uninterrupted
    run ends: checkpoint tensors, metrics, best checkpoint, test results and predictions."""
    data = os.path.join(tmp, "data")
    run("generate", "--out", data, "--count", "48", "--size", "48", "--seed", "3", expect=0)
    command = ["finetune", "--data", data, "--size", "32", "--width", "0.5", "--small-stem", "--epochs", "4",
               "--batch-size", "4", "--threads", "1", "--device", "cpu", "--checkpoint-every", "1", "--log-every", "1"]
    whole, killed, _ = kill_and_resume(tmp, command, kill_at_step=3)
    for name in ("best.safetensors", "best.json", "results.json", "predictions.csv", "split.csv", "metrics.svg"):
        with open(os.path.join(whole, name), "rb") as a, open(os.path.join(killed, name), "rb") as b:
            check(a.read() == b.read(), f"{name} differs between the uninterrupted and the resumed run")
    svg = read_svg(os.path.join(whole, "metrics.svg"))
    panels = [t.text for p in svg_elements(svg, "svg", "panel") for t in p.findall(SVG + "text")
              if t.text and ": " in t.text]
    check("train: loss" in panels and "val: kappa" in panels, f"metrics.svg panels: {panels}")


def case_pretrain_killed_and_resumed(tmp):
    """The same for SimCLR pretraining (LARS state, two augmented views per image)."""
    data = os.path.join(tmp, "data")
    run("generate", "--out", data, "--count", "40", "--size", "40", "--seed", "4", expect=0)
    command = ["pretrain", "--method", "simclr", "--data", data, "--size", "32", "--width", "0.25", "--small-stem",
               "--epochs", "3", "--batch-size", "8", "--threads", "1", "--device", "cpu", "--checkpoint-every", "1",
               "--log-every", "1"]
    whole, killed, _ = kill_and_resume(tmp, command, kill_at_step=2)
    with open(os.path.join(whole, "backbone.safetensors"), "rb") as a, \
            open(os.path.join(killed, "backbone.safetensors"), "rb") as b:
        check(a.read() == b.read(), "backbone.safetensors differs between the uninterrupted and the resumed run")


def case_resume_other_settings(tmp):
    """Resuming with settings that change the computation is refused, naming each setting; --no-resume
    starts over; settings that only change where and how it runs (threads, log interval) may change."""
    data = os.path.join(tmp, "data")
    run("generate", "--out", data, "--count", "24", "--size", "40", "--seed", "5", expect=0)
    out = os.path.join(tmp, "ft")
    base = ["finetune", "--data", data, "--size", "32", "--width", "0.25", "--small-stem", "--batch-size", "4",
            "--device", "cpu", "--out", out]
    run(*base, "--epochs", "1", "--threads", "1", expect=0)
    with open(os.path.join(out, "results.json")) as f:
        results = f.read()
    code, _, err = run(*base, "--epochs", "2", "--lr", "0.01")
    check(code == 1 and "epochs" in err and "lr" in err and "--no-resume" in err,
          f"resume with other settings: exit {code}\n{err}")
    with open(os.path.join(out, "results.json")) as f:
        check(f.read() == results, "a refused resume changed results.json")
    with open(os.path.join(out, "config.json")) as f:
        check(json.load(f)["epochs"] == 1, "a refused resume rewrote config.json")
    run(*base, "--epochs", "1", "--threads", "2", "--log-every", "3", expect=0)
    run(*base, "--epochs", "2", "--no-resume", expect=0)
    with open(os.path.join(out, "config.json")) as f:
        check(json.load(f)["epochs"] == 2, "--no-resume did not start the 2-epoch run")


def case_config_file(tmp):
    """--config FILE (YAML or JSON): settings by flag name, command-line flags override them, a run's
    own config.json reproduces the run; unknown keys, duplicates, bad values, malformed files and a
    config of another subcommand are errors naming the file and the key."""
    data = os.path.join(tmp, "data")
    run("generate", "--out", data, "--count", "24", "--size", "40", "--seed", "6", expect=0)
    yaml_file = os.path.join(tmp, "ft.yaml")
    with open(yaml_file, "w") as f:
        f.write(f"# fine-tuning settings\ndata: {data}\nsize: 32\nwidth: 0.25\nsmall_stem: true\nepochs: 3\n"
                "batch-size: 4\nthreads: 1\ndevice: cpu\nlabel_scheme: referable\n")
    first = os.path.join(tmp, "first")
    run("finetune", "--config", yaml_file, "--epochs", "1", "--out", first, expect=0)
    with open(os.path.join(first, "config.json")) as f:
        config = json.load(f)
    check(config["epochs"] == 1, f"--epochs on the command line did not override the file: {config['epochs']}")
    check(config["batch_size"] == 4 and config["small_stem"] is True and config["label_scheme"] == "referable"
          and abs(config["width"] - 0.25) < 1e-9, f"settings from the YAML file not applied: {config}")
    again = os.path.join(tmp, "again")
    run("finetune", "--config", os.path.join(first, "config.json"), "--out", again, expect=0)
    for name in ("best.safetensors", "results.json", "metrics.jsonl"):
        with open(os.path.join(first, name), "rb") as a, open(os.path.join(again, name), "rb") as b:
            check(a.read() == b.read(), f"a run from the first run's config.json differs in {name}")
    # --deterministic / --no-tf32 (GPU math): in config.json and environment.json, read back from
    # config.json; the CPU ops are always fp32 and deterministic, so the results equal the first run's.
    flagged, flagged_again = os.path.join(tmp, "flagged"), os.path.join(tmp, "flagged_again")
    run("finetune", "--config", yaml_file, "--epochs", "1", "--out", flagged, "--deterministic", "--no-tf32",
        expect=0)
    run("finetune", "--config", os.path.join(flagged, "config.json"), "--out", flagged_again, expect=0)
    for d in (flagged, flagged_again):
        with open(os.path.join(d, "config.json")) as f:
            c = json.load(f)
        with open(os.path.join(d, "environment.json")) as f:
            e = json.load(f)
        check(c["deterministic"] is True and c["tf32"] is False and
              e["gpu_math"] == {"tf32": False, "deterministic": True}, f"{d}: config {c}, environment {e}")
        for name in ("results.json", "metrics.jsonl", "predictions.csv"):
            with open(os.path.join(first, name), "rb") as a, open(os.path.join(d, name), "rb") as b:
                check(a.read() == b.read(), f"--deterministic --no-tf32 changed {name} on the CPU")
    check("deterministic" not in config and "tf32" not in config, f"default math settings in config.json: {config}")
    bad = [("bogus: 1\n", "bogus"), ("epochs: 0\n", "epochs"), ("epochs: [1\n", "YAML"),
           ("linear: maybe\n", "linear"), ("epochs: 2\nepochs: 3\n", "twice"), ('{"lr": 0.1, "lr": 0.2}', "twice"),
           ('{"lr": {"x": 1}}', "lr"), ('{"epochs": 2,}', "JSON"), ("command: pretrain\n", "pretrain")]
    for i, (text, word) in enumerate(bad):
        path = os.path.join(tmp, f"bad{i}.{'json' if text.startswith('{') else 'yaml'}")
        with open(path, "w") as f:
            f.write(text)
        code, _, err = run("finetune", "--config", path, "--data", data, "--out", os.path.join(tmp, f"o{i}"))
        check(code == 1 and path in err and word in err, f"bad config {text!r}: exit {code}\n{err}")
        check(not os.path.exists(os.path.join(tmp, f"o{i}", "config.json")), f"bad config {text!r} started a run")
    code, _, err = run("finetune", "--config", os.path.join(tmp, "missing.yaml"), "--out", os.path.join(tmp, "m"))
    check(code == 1 and "missing.yaml" in err, f"missing config file: exit {code}\n{err}")
    _, out, _ = run("pretrain", "--help", expect=0)
    check("--config" in out and "--checkpoint-every" in out, "pretrain --help lacks --config/--checkpoint-every")


def case_finetune_imbalance(tmp):
    """--class-weights inverse gives n / (K n_k) from the training split (checked against split.csv and
    labels.csv); explicit weights of the wrong count or sign, and an unknown sampler, are errors."""
    data = os.path.join(tmp, "data")
    run("generate", "--out", data, "--count", "40", "--size", "40", "--seed", "7", expect=0)
    out = os.path.join(tmp, "ft")
    base = ["finetune", "--data", data, "--size", "32", "--width", "0.25", "--small-stem", "--batch-size", "4",
            "--device", "cpu", "--epochs", "1", "--label-scheme", "referable"]
    run(*base, "--sampler", "balanced", "--class-weights", "inverse", "--label-smoothing", "0.1", "--out", out,
        expect=0)
    with open(os.path.join(data, "labels.csv")) as f:
        grade = {row.split(",")[0]: int(row.split(",")[1]) for row in f.read().split()[1:]}
    with open(os.path.join(out, "split.csv")) as f:
        train = [row.split(",")[0] for row in f.read().split()[1:] if row.split(",")[1] == "train"]
    counts = [sum(1 for i in train if (grade[i] >= 2) == bool(k)) for k in (0, 1)]
    want = [len(train) / (2 * c) for c in counts]
    with open(os.path.join(out, "log.txt")) as f:
        line = [l for l in f.read().splitlines() if "class weights" in l]
    check(len(line) == 1, "log.txt does not record the class weights")
    got = [float(v) for v in line[0].split("class weights")[1].split(",")]
    check(all(abs(g - w) < 1e-4 * w for g, w in zip(got, want)) and len(got) == 2,
          f"inverse class weights {got}, expected {want} (train counts {counts})")
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    check(config["sampler"] == "balanced" and config["class_weights"] == "inverse", f"config.json: {config}")
    for flags, word in ((["--class-weights", "1,2,3"], "3 weights for 2 classes"),
                        (["--class-weights", "1,-2"], "-2"), (["--class-weights", "1,x"], "'x'")):
        code, _, err = run(*base, *flags, "--out", os.path.join(tmp, "bad"))
        check(code == 1 and word in err, f"{flags}: exit {code}\n{err}")
    run(*base, "--sampler", "weighted", "--out", os.path.join(tmp, "bad2"), expect=2)


def case_pretrain_images(tmp):
    """pretrain --images train learns from the training patients of the split fovea finetune makes
    with the same seed, fractions and label scheme (written to split.csv, the same file), never from a
    validation or test patient; --images all from every image; the split's flags need --images train,
    and an unlabelled folder cannot be split."""
    data = os.path.join(tmp, "data")
    run("generate", "--out", data, "--count", "40", "--size", "40", "--seed", "4", expect=0)
    small = ["--data", data, "--size", "32", "--width", "0.25", "--small-stem", "--epochs", "1", "--batch-size", "4",
             "--threads", "1", "--device", "cpu"]

    def read_split(path):
        with open(path) as f:
            rows = list(csv.reader(f))
        check(rows[0] == ["image", "split"], f"{path}: header {rows[0]}")
        return rows[1:]

    for extra in ([], ["--seed", "3", "--test-fraction", "0.3", "--label-scheme", "referable"]):
        pre, ft = os.path.join(tmp, "pre" + "".join(extra)), os.path.join(tmp, "ft" + "".join(extra))
        _, out, _ = run("pretrain", *small, "--out", pre, "--images", "train", *extra, expect=0)
        run("finetune", *small, "--out", ft, *extra, expect=0)
        split = read_split(os.path.join(pre, "split.csv"))
        check(split == read_split(os.path.join(ft, "split.csv")), f"{extra}: pretrain's split.csv is not finetune's")
        train = sum(1 for _, s in split if s == "train")
        check(len(split) == 40 and 0 < train < 40, f"{extra}: split of {len(split)} images, {train} training")
        check(f"{train} of the 40 images" in out, f"{extra}: the log does not count {train} training images:\n{out}")
        # The kNN monitor's bank and queries are the images pretraining saw: the training patients.
        m = re.search(r"(\d+) bank and (\d+) query images \(answering their most common grade scores ([0-9.]+)\)", out)
        check(m and int(m.group(1)) + int(m.group(2)) == train, f"{extra}: kNN monitor over other images:\n{out}")
        # Its baseline: the share of the queries' most common grade, a count over the queries.
        queries, majority = int(m.group(2)), float(m.group(3))
        top = round(majority * queries)
        check(abs(majority - top / queries) < 1e-4 and queries / 5 <= top <= queries,
              f"{extra}: the kNN baseline {majority} is not a grade's share of {queries} queries")
        with open(os.path.join(pre, "config.json")) as f:
            config = json.load(f)
        check(config["images"] == "train" and config.get("label_scheme") == ("referable" if extra else "grades"),
              f"{extra}: config.json {config}")
    whole = os.path.join(tmp, "pre_all")
    _, out, _ = run("pretrain", *small, "--out", whole, expect=0)
    check("40 images from" in out and not os.path.exists(os.path.join(whole, "split.csv")),
          f"--images all (the default) does not use all 40 images:\n{out}")
    with open(os.path.join(whole, "config.json")) as f:
        check("images" not in json.load(f), "--images all is recorded in config.json (older runs must resume)")
    # Fine-tuning from a backbone says how many of its validation and test images the backbone was
    # pretrained on (the weights' metadata name the data and the images): all of them after
    # --images all, none after --images train with the same split, the exact overlap with another.
    def overlap_note(init, out, *extra):
        _, text, _ = run("finetune", *small, "--out", out, "--init", init, *extra, expect=0)
        split = read_split(os.path.join(out, "split.csv"))
        m = re.search(r"was pretrained on (\d+) of the (\d+) test and (\d+) of the (\d+) validation images", text)
        return split, (tuple(int(g) for g in m.groups()) if m else None), text

    split, note, text = overlap_note(os.path.join(whole, "backbone.safetensors"), os.path.join(tmp, "ft_all"))
    test = sum(1 for _, s in split if s == "test")
    val = sum(1 for _, s in split if s == "validation")
    check(note == (test, test, val, val) and "--images all" in text,
          f"no note that the backbone saw every held-out image ({test} test, {val} validation):\n{text}")
    pre = os.path.join(tmp, "pre")  # --images train, seed 0
    _, note, text = overlap_note(os.path.join(pre, "backbone.safetensors"), os.path.join(tmp, "ft_same"))
    check(note is None and "pretrained on" not in text, f"a note although the split held them out:\n{text}")
    split, note, text = overlap_note(os.path.join(pre, "backbone.safetensors"), os.path.join(tmp, "ft_seed5"),
                                     "--seed", "5")
    seen = {i for i, s in read_split(os.path.join(pre, "split.csv")) if s == "train"}
    expected = (sum(1 for i, s in split if s == "test" and i in seen), sum(1 for _, s in split if s == "test"),
                sum(1 for i, s in split if s == "validation" and i in seen),
                sum(1 for _, s in split if s == "validation"))
    check((note or (0, expected[1], 0, expected[3])) == expected and (note is None) == (expected[0] + expected[2] == 0),
          f"--seed 5 after a seed-0 pretraining: note {note}, expected {expected}:\n{text}")
    check(note is None or "another split" in text, f"the note does not say it was another split:\n{text}")
    # pretrain.json: the loss of the last logged steps (a tenth of the rows, at least 5) against
    # chance, log(2B - 1) for SimCLR at batch 4, and a warning in the log when it is not 2 % below.
    with open(os.path.join(whole, "metrics.jsonl")) as f:
        losses = [r["loss"] for r in map(json.loads, f) if r["phase"] == "train"]
    last = losses[-min(len(losses), max(5, len(losses) // 10)):]
    with open(os.path.join(whole, "pretrain.json")) as f:
        summary = json.load(f)
    chance = math.log(7)
    check(summary["candidates"] == 7 and abs(summary["chance_loss"] - chance) < 1e-12 and
          abs(summary["chance_top1"] - 1 / 7) < 1e-12 and summary["rows"] == len(last) and
          abs(summary["loss"] - sum(last) / len(last)) < 1e-9 and summary["steps"] == 10,
          f"pretrain.json {summary} against the losses {losses}")
    check(summary["left_chance"] == (summary["loss"] < 0.98 * chance), f"pretrain.json left_chance: {summary}")
    with open(os.path.join(whole, "log.txt")) as f:
        warned = "has not fallen 2 % below chance" in f.read()
    check(warned == (not summary["left_chance"]), f"warning {warned} for {summary}")
    # A run resumed with the other --images is refused, naming it.
    code, _, err = run("pretrain", *small, "--out", whole, "--images", "train")
    check(code == 1 and "images" in err, f"resume with --images train: exit {code}\n{err}")
    code, _, err = run("pretrain", *small, "--out", os.path.join(tmp, "bad"), "--val-fraction", "0.3")
    check(code == 1 and "--val-fraction" in err and "--images train" in err, f"--val-fraction alone: exit {code}\n{err}")
    unlabelled = os.path.join(tmp, "unlabelled")
    os.makedirs(unlabelled)
    for name in sorted(os.listdir(os.path.join(data, "images")))[:12]:
        shutil.copy(os.path.join(data, "images", name), unlabelled)
    code, _, err = run("pretrain", *small[2:], "--data", unlabelled, "--out", os.path.join(tmp, "unl"), "--images", "train")
    check(code == 1 and "no labels" in err and unlabelled in err, f"--images train on an unlabelled folder: exit {code}\n{err}")
    run("pretrain", *small[2:], "--data", unlabelled, "--out", os.path.join(tmp, "unl_all"), expect=0)


def case_pretrain_augment(tmp):
    """pretrain --augment: the views' augmentation by preset and key=value changes, logged in full and
    recorded in config.json when it is not the method's own (a resume with another one is refused);
    bad presets, keys and values are usage errors naming them, in fovea study --pretrain-augment too.
    SimCLR with the fundus and crop presets learns on synthetic fundi: its loss ends far below chance
    (this fails when the two views, NT-Xent's gradient or LARS are broken)."""
    data = os.path.join(tmp, "data")
    run("generate", "--out", data, "--count", "64", "--size", "48", "--seed", "0", expect=0)
    small = ["--data", data, "--size", "32", "--width", "0.125", "--small-stem", "--batch-size", "16",
             "--threads", "1", "--device", "cpu", "--knn-every", "0", "--log-every", "5"]
    for preset in ("fundus", "crop"):
        out = os.path.join(tmp, preset)
        _, log, _ = run("pretrain", *small, "--epochs", "15", "--out", out, "--augment", preset, expect=0)
        with open(os.path.join(out, "pretrain.json")) as f:
            summary = json.load(f)
        check(summary["steps"] == 60 and abs(summary["chance_loss"] - math.log(31)) < 1e-12,
              f"{preset}: pretrain.json {summary}")
        check(summary["left_chance"] and summary["loss"] < 0.85 * summary["chance_loss"],
              f"{preset}: SimCLR did not learn, loss {summary['loss']} against chance {summary['chance_loss']}")
        check("has not fallen 2 % below chance" not in log, f"{preset}: warning although it learned:\n{log}")
        with open(os.path.join(out, "config.json")) as f:
            recorded = json.load(f)["augment"]
        check(f"pretrain: augmentation {preset} ({recorded})" in log, f"{preset}: log line:\n{log}")
        meta, _ = read_safetensors(os.path.join(out, "backbone.safetensors"))
        check(meta.get("fovea.pretrain_augment") == recorded, f"{preset}: backbone metadata {meta}")
        expect = {"fundus": "scale_min=0.2,", "crop": "jitter_p=0,"}[preset]
        check(expect in recorded and ("brightness=0.2," in recorded) == (preset == "fundus"),
              f"{preset}: config.json augment {recorded}")
    # Key changes of the method's preset; the method's own preset, named or not, is not recorded.
    out = os.path.join(tmp, "keys")
    _, log, _ = run("pretrain", *small, "--epochs", "1", "--out", out, "--augment", "hue=0.05, grayscale_p=0",
                    expect=0)
    with open(os.path.join(out, "config.json")) as f:
        recorded = json.load(f)["augment"]
    check("scale_min=0.08," in recorded and "brightness=0.8," in recorded and "hue=0.05," in recorded and
          "grayscale_p=0," in recorded, f"SimCLR's preset with hue and grayscale changed: {recorded}")
    for extra in ([], ["--augment", "simclr"]):
        plain = os.path.join(tmp, "plain" + "".join(extra))
        _, log, _ = run("pretrain", *small, "--epochs", "1", "--out", plain, *extra, expect=0)
        with open(os.path.join(plain, "config.json")) as f:
            check("augment" not in json.load(f), f"{extra}: the method's own augmentation is recorded")
        check("pretrain: augmentation simclr (scale_min=0.08," in log, f"{extra}: log:\n{log}")
    # The run's config.json reproduces it (its augment text parses back); another augmentation
    # cannot resume it.
    again = os.path.join(tmp, "again")
    run("pretrain", "--config", os.path.join(out, "config.json"), "--out", again, expect=0)
    with open(os.path.join(out, "backbone.safetensors"), "rb") as a, open(os.path.join(again, "backbone.safetensors"), "rb") as b:
        check(a.read() == b.read(), "--config of a run's config.json gave other weights")
    code, _, err = run("pretrain", *small, "--epochs", "2", "--out", out, "--augment", "fundus")
    check(code == 1 and "augment" in err and "--no-resume" in err, f"resume with another augmentation: exit {code}\n{err}")
    for bad, named in (("byol", "'byol' is not one of simclr, moco_v2, fundus, crop"),
                       ("jitter=0.4", "unknown key 'jitter'"), ("hue=0.7", "hue <= 0.5"),
                       ("fundus,hue=x", "hue='x' is not a finite number"), ("hue=0,fundus", "can only come first")):
        code, _, err = run("pretrain", *small, "--out", os.path.join(tmp, "bad"), "--augment", bad)
        check(code == 2 and named in err, f"--augment {bad}: exit {code}\n{err}")
        check(not os.path.exists(os.path.join(tmp, "bad")), f"--augment {bad} created the run folder")
    code, _, err = run("study", "--out", os.path.join(tmp, "study"), "--pretrain-augment", "grayscale_p=2")
    check(code == 2 and "probabilities must be in [0, 1]" in err, f"study --pretrain-augment: exit {code}\n{err}")


def case_contradictory_flags(tmp):
    """Flags that do not apply together are errors (exit 1, naming the flag), unless they only repeat
    a default, as a run's config.json does for the settings its method does not use; --full takes
    explicit flags over its own sizes."""
    data = os.path.join(tmp, "data")
    run("generate", "--out", data, "--count", "16", "--size", "40", "--seed", "8", expect=0)
    small = ["--size", "32", "--width", "0.25", "--small-stem", "--batch-size", "4", "--device", "cpu",
             "--threads", "1"]
    for args, flag in ((["pretrain", "--method", "simclr", "--queue", "1024"], "--queue"),
                       (["pretrain", "--key-momentum", "0.9"], "--key-momentum"),
                       (["evaluate", "--weights", os.path.join(tmp, "w.safetensors"), "--split-name", "train"],
                        "--split-name"),
                       (["study", "--count", "50"], "--count")):
        out = os.path.join(tmp, "o_" + flag.strip("-"))
        code, _, err = run(*args, "--data", data, "--out", out, *small[:2])
        check(code == 1 and flag in err and "does not apply" in err, f"{args}: exit {code}\n{err}")
        check(not os.path.exists(os.path.join(out, "config.json")), f"{args} started a run")
    pre = os.path.join(tmp, "pre")
    run("pretrain", "--data", data, "--out", pre, "--epochs", "1", *small, expect=0)
    with open(os.path.join(pre, "config.json")) as f:
        config = json.load(f)
    check(config["queue"] == 4096 and config["method"] == "simclr", f"pretrain config.json: {config}")
    again = os.path.join(tmp, "pre_again")
    run("pretrain", "--config", os.path.join(pre, "config.json"), "--out", again, expect=0)
    with open(os.path.join(pre, "backbone.safetensors"), "rb") as a, \
            open(os.path.join(again, "backbone.safetensors"), "rb") as b:
        check(a.read() == b.read(), "a SimCLR run from its own config.json gave other weights")
    _, out, _ = run("study", "--help", expect=0)
    check("override" in out, "study --help does not say that flags override --full")



# ---- fovea features -------------------------------------------------------------------------------

def resnet18_feature_layers(classifier=True):
    """The conv, BN and linear layers of a ResNet-18 in network (torchvision module) order."""
    layers = ["conv1", "bn1"]
    for stage in range(1, 5):
        for block in range(2):
            b = f"layer{stage}.{block}."
            layers += [b + "conv1", b + "bn1", b + "conv2", b + "bn2"]
            if stage > 1 and block == 0:
                layers += [b + "downsample.0", b + "downsample.1"]
    return layers + (["fc"] if classifier else [])


def read_csv(path):
    with open(path) as f:
        return [line.rstrip("\n").split(",") for line in f]


def read_matrix(path):
    """(row names, column names, values) of cka.csv / cka_compare.csv."""
    rows = read_csv(path)
    check(rows[0][0] == "layer", f"{path}: header {rows[0][:3]}")
    return [r[0] for r in rows[1:]], rows[0][1:], [[float(v) for v in r[1:]] for r in rows[1:]]


FEATURE_MODEL = ["--arch", "resnet18", "--width", "0.25", "--small-stem"]


def features(weights, out, *extra, expect=0):
    return run("features", *FEATURE_MODEL, "--weights", weights, "--size", "32", "--device", "cpu", "--out", out,
               *extra, expect=expect)


def case_features_synthetic(tmp):
    """fovea features on 16 synthetic images: the conv / BN / linear layers in network order, finite
    condition numbers >= 1, a symmetric CKA matrix with ones on its diagonal; a tiny --max-memory (many
    forward passes, layers split by features) gives the same numbers; --compare with itself gives a
    cross-model CKA diagonal of 1."""
    weights = os.path.join(tmp, "r18.safetensors")
    run("init", *FEATURE_MODEL, "--num-classes", "5", "--seed", "2", "--out", weights, expect=0)
    out = os.path.join(tmp, "feat")
    _, stdout, _ = features(weights, out, "--synthetic", "16")
    check("1 forward pass" in stdout, "one pass expected under the default --max-memory:\n" + stdout)
    for name in ("features.json", "spectra.csv", "cn.csv", "cka.csv"):
        check(os.path.exists(os.path.join(out, name)), f"{name} missing")
    cn_points = svg_elements(read_svg(os.path.join(out, "cn.svg")), "circle", "marker")
    cka_cells = svg_elements(read_svg(os.path.join(out, "cka.svg")), "rect", "cell")
    read_svg(os.path.join(out, "spectra.svg"))
    check(not os.path.exists(os.path.join(out, "cka_compare.svg")), "cka_compare.svg without --compare")
    check(not os.path.exists(os.path.join(out, "cka_compare.csv")), "cka_compare.csv without --compare")
    with open(os.path.join(out, "features.json")) as f:
        result = json.load(f)
    expected = resnet18_feature_layers()
    paths = [l["path"] for l in result["layers"]]
    check(paths == expected, f"layers {paths}")
    finite_cn = [l for l in result["layers"] if l["cn"] is not None and l["cn"] > 0]
    check(len(cn_points) == len(finite_cn), f"cn.svg: {len(cn_points)} points for {len(finite_cn)} finite CNs")
    check(len(cka_cells) == len(paths) ** 2, f"cka.svg: {len(cka_cells)} cells for {len(paths)} layers")
    check(result["data"]["source"] == "synthetic" and result["data"]["images"] == 16, str(result["data"]))
    check(len(result["images"]) == 16 and result["settings"]["cn_percentiles"] == [99.9, 90.0],
          str(result["settings"]))
    check(result["model"]["num_classes"] == 5 and result["model"]["classifier"], str(result["model"]))
    shapes = {l["path"]: l["output_shape"] for l in result["layers"]}
    check(shapes["conv1"] == [16, 32, 32] and shapes["layer4.1.bn2"] == [128, 4, 4] and shapes["fc"] == [5],
          str(shapes))
    for l in result["layers"]:
        f = 1
        for d in l["output_shape"]:
            f *= d
        check(l["features"] == f and 0 <= l["constant_features"] <= f, f"{l['path']}: {l['features']}")
        ev = l["eigenvalues"]
        check(len(ev) == min(100, 16, f), f"{l['path']}: {len(ev)} eigenvalues")
        check(all(ev[i] >= ev[i + 1] >= 0 for i in range(len(ev) - 1)), f"{l['path']}: not descending: {ev}")
        check(l["cn"] is not None and math.isfinite(l["cn"]) and l["cn"] >= 1, f"{l['path']}: CN {l['cn']}")
        check(l["kind"] == ("linear" if l["path"] == "fc" else "bn" if "bn" in l["path"] or
                            l["path"].endswith("downsample.1") else "conv"), f"{l['path']}: kind {l['kind']}")
    # Standardised features: the sum of all N - 1 nonzero eigenvalues is the number of varying features
    # (the trace of their correlation matrix), checked where the spectrum is complete (fc: 5 features).
    fc = result["layers"][-1]
    check(abs(sum(fc["eigenvalues"]) - (5 - fc["constant_features"])) < 1e-6, f"fc spectrum {fc['eigenvalues']}")
    check(result["first_conv"]["layer"] == "conv1" and math.isfinite(result["first_conv"]["kurtosis"]),
          str(result["first_conv"]))
    cn = read_csv(os.path.join(out, "cn.csv"))
    check(cn[0] == ["layer", "kind", "cn"] and [r[0] for r in cn[1:]] == expected, f"cn.csv {cn[:3]}")
    check(all(float(r[2]) >= 1 for r in cn[1:]), "cn.csv has a CN below 1")
    spectra = read_csv(os.path.join(out, "spectra.csv"))
    check(spectra[0] == ["layer", "index", "eigenvalue"], f"spectra.csv header {spectra[0]}")
    check(len(spectra) - 1 == sum(len(l["eigenvalues"]) for l in result["layers"]), "spectra.csv row count")
    rows, cols, m = read_matrix(os.path.join(out, "cka.csv"))
    check(rows == expected and cols == expected, "cka.csv layer names")
    n = len(expected)
    for i in range(n):
        check(abs(m[i][i] - 1) < 1e-9, f"CKA({rows[i]}, itself) = {m[i][i]}")
        for j in range(n):
            check(m[i][j] == m[j][i] and -1e-9 <= m[i][j] <= 1 + 1e-9, f"CKA[{i}][{j}] = {m[i][j]} vs {m[j][i]}")
    check(m[0][1] > 0.99, f"conv1 and bn1 (an affine map per channel) have CKA {m[0][1]}")
    # 320 KiB: 16 images x 5,120 features per pass, so 31 passes, the early layers (16,384 features)
    # split by features over several of them.
    small = os.path.join(tmp, "small")
    _, stdout, _ = features(weights, small, "--synthetic", "16", "--max-memory", "320K", "--layers", "conv,linear")
    check("31 forward passes" in stdout, "--max-memory 320K should need 31 passes:\n" + stdout)
    with open(os.path.join(small, "features.json")) as f:
        small_result = json.load(f)
    by_path = {l["path"]: l for l in result["layers"]}
    check([l["path"] for l in small_result["layers"]] == [p for p in expected if "bn" not in p and
                                                          not p.endswith("downsample.1")], "--layers conv,linear")
    for l in small_result["layers"]:
        big = by_path[l["path"]]
        check(l["constant_features"] == big["constant_features"], f"{l['path']}: constant features differ")
        for a, b in zip(l["eigenvalues"], big["eigenvalues"]):
            check(abs(a - b) <= 1e-9 * max(1.0, abs(b)), f"{l['path']}: eigenvalue {a} vs {b} in one pass")
    # The model against itself: CKA 1 on the diagonal, the cross matrix equals the within-model one.
    both = os.path.join(tmp, "both")
    features(weights, both, "--synthetic", "16", "--compare", weights, "--layers", "conv1,layer2.0.bn2,fc")
    rows, cols, cross = read_matrix(os.path.join(both, "cka_compare.csv"))
    check(rows == ["conv1", "layer2.0.bn2", "fc"] == cols, f"cka_compare.csv names {rows} {cols}")
    cells = svg_elements(read_svg(os.path.join(both, "cka_compare.svg")), "rect", "cell")
    check(len(cells) == 9, f"cka_compare.svg: {len(cells)} cells for 3 x 3 layers")
    _, _, within = read_matrix(os.path.join(both, "cka.csv"))
    for i in range(3):
        check(abs(cross[i][i] - 1) < 1e-9, f"self-comparison CKA {cross[i][i]} at {rows[i]}")
        for j in range(3):
            check(abs(cross[i][j] - within[i][j]) < 1e-12, f"cross {cross[i][j]} vs within {within[i][j]}")
    with open(os.path.join(both, "features.json")) as f:
        diagonal = json.load(f)["cka_compare"]["diagonal"]
    check([d["layer"] for d in diagonal] == rows and all(abs(d["cka"] - 1) < 1e-9 for d in diagonal),
          str(diagonal))


def case_features_run_folders(tmp):
    """fovea features reads what the drivers write: a fine-tuning run folder (best.safetensors) and its
    checkpoints/latest (a training checkpoint, model under "model."), and a pretraining run's backbone
    (no classifier: fc left out; naming fc is an error); images from a labelled folder."""
    data = os.path.join(tmp, "data")
    run("generate", "--out", data, "--count", "16", "--size", "40", "--seed", "6", expect=0)
    common = [*FEATURE_MODEL, "--size", "32", "--epochs", "1", "--threads", "1", "--device", "cpu"]
    ft, pt = os.path.join(tmp, "ft"), os.path.join(tmp, "pt")
    run("finetune", "--data", data, "--batch-size", "4", "--out", ft, *common, expect=0)
    run("pretrain", "--data", data, "--batch-size", "8", "--out", pt, *common, expect=0)
    results = {}
    for name, weights in (("run", ft), ("latest", os.path.join(ft, "checkpoints", "latest")), ("backbone", pt)):
        out = os.path.join(tmp, "feat_" + name)
        features(weights, out, "--data", data, "--count", "12")
        with open(os.path.join(out, "features.json")) as f:
            results[name] = json.load(f)
    check(results["run"]["model"]["weights_file"].endswith("best.safetensors"), str(results["run"]["model"]))
    check(results["latest"]["model"]["weights_kind"] == "training checkpoint", str(results["latest"]["model"]))
    check(results["backbone"]["model"]["weights_file"].endswith("backbone.safetensors") and
          not results["backbone"]["model"]["classifier"], str(results["backbone"]["model"]))
    check([l["path"] for l in results["run"]["layers"]] == resnet18_feature_layers(), "fine-tuned model layers")
    check([l["path"] for l in results["backbone"]["layers"]] == resnet18_feature_layers(False), "backbone layers")
    check(results["run"]["data"]["images"] == 12 and results["run"]["data"]["available"] == 16,
          str(results["run"]["data"]))
    check(results["run"]["images"] == results["backbone"]["images"], "the same --seed chose other images")
    # One epoch: the best checkpoint is the final model, so both files give the same statistics.
    check(results["run"]["layers"] == results["latest"]["layers"], "best.safetensors and checkpoints/latest differ")
    check(results["run"]["layers"][0]["eigenvalues"] != results["backbone"]["layers"][0]["eigenvalues"],
          "a pretrained backbone and a fine-tuned model gave the same conv1 spectrum")
    code, _, err = features(pt, os.path.join(tmp, "x"), "--data", data, "--layers", "conv1,fc", expect=None)
    check(code == 1 and "fc" in err and "classifier" in err, f"fc of backbone weights: exit {code}, {err}")
    # --split: only the images the fine-tuning run's split.csv assigns to --split-name.
    split = os.path.join(ft, "split.csv")
    parts = {}
    for row in read_csv(split)[1:]:
        parts.setdefault(row[1], []).append(os.path.splitext(row[0])[0])
    for name in ("test", "train"):
        out = os.path.join(tmp, "feat_split_" + name)
        features(ft, out, "--data", data, "--split", split, "--split-name", name, "--layers", "conv1,fc")
        with open(os.path.join(out, "features.json")) as f:
            r = json.load(f)
        check(sorted(os.path.splitext(i)[0] for i in r["images"]) == sorted(parts[name]) and
              r["data"]["split"] == split and r["data"]["split_name"] == name,
              f"--split-name {name}: {r['images']} vs {parts[name]}, {r['data']}")
    code, _, err = features(ft, os.path.join(tmp, "x"), "--data", data, "--split", split, "--split-name", "dev",
                            expect=None)
    check(code == 2 and "--split-name" in err and "dev" in err, f"--split-name dev: exit {code}, {err}")
    short = os.path.join(tmp, "short_split.csv")
    with open(short, "w") as f:
        f.write("image,split\n" + "".join(f"{r[0]},{r[1]}\n" for r in read_csv(split)[2:]))
    code, _, err = features(ft, os.path.join(tmp, "x"), "--data", data, "--split", short, expect=None)
    check(code == 1 and "short_split.csv" in err and "no split for image" in err, f"short split: exit {code}, {err}")
    check(not os.path.exists(os.path.join(tmp, "x")), "a failed run created its output folder")


def case_features_devices(tmp):
    """With a usable GPU: fovea features --device cuda (activation buffers and Grams on the device:
    copy_feature_columns, the centring kernel, cublasDsyrk) against --device cpu on the same 24
    synthetic images, with a --max-memory that splits layers over many passes and a --compare model:
    the same layers and constant features, spectra and CKA equal within what TF32 convolutions
    change. Exit 77 (skipped) on a machine without one, or when the fovea program was not built."""
    require_gpu()
    weights, other = os.path.join(tmp, "a.safetensors"), os.path.join(tmp, "b.safetensors")
    for seed, path in (("2", weights), ("3", other)):
        run("init", *FEATURE_MODEL, "--num-classes", "5", "--seed", seed, "--out", path, expect=0)
    results = {}
    for device in ("cpu", "cuda"):
        out = os.path.join(tmp, device)
        _, stdout, _ = run("features", *FEATURE_MODEL, "--weights", weights, "--compare", other, "--size", "32",
                           "--synthetic", "24", "--max-memory", "200K", "--device", device, "--out", out, expect=0)
        check("forward passes" in stdout, "--max-memory 200K should need several passes:\n" + stdout)
        with open(os.path.join(out, "features.json")) as f:
            results[device] = json.load(f)
    cpu, gpu = results["cpu"], results["cuda"]
    check([l["path"] for l in cpu["layers"]] == [l["path"] for l in gpu["layers"]], "layer lists differ")
    for a, b in zip(cpu["layers"], gpu["layers"]):
        check(abs(a["constant_features"] - b["constant_features"]) <= 0.01 * a["features"],
              f"{a['path']}: constant features {a['constant_features']} (cpu) vs {b['constant_features']} (cuda)")
        top = max(a["eigenvalues"])
        for i, (x, y) in enumerate(zip(a["eigenvalues"], b["eigenvalues"])):
            if x >= 1e-3 * top:
                check(abs(x - y) <= 2e-2 * x, f"{a['path']}: eigenvalue {i} {x} (cpu) vs {y} (cuda)")
    for key in ("cka", "cka_compare"):
        for ra, rb in zip(cpu[key]["matrix"], gpu[key]["matrix"]):
            for x, y in zip(ra, rb):
                check((x is None) == (y is None) and (x is None or abs(x - y) <= 1e-2), f"{key}: {x} vs {y}")


def case_features_bad_inputs(tmp):
    """Clear errors: an unknown --layers name (exit 2, named, the known layers listed), missing weights,
    weights of another width, too few images, an empty folder (exit 1); nothing is written."""
    weights = os.path.join(tmp, "r18.safetensors")
    run("init", *FEATURE_MODEL, "--num-classes", "3", "--out", weights, expect=0)
    out = os.path.join(tmp, "out")
    code, _, err = features(weights, out, "--synthetic", "8", "--layers", "conv1,layer1.0.conv9", expect=None)
    check(code == 2 and "layer1.0.conv9" in err and "layer4.1.bn2" in err, f"unknown layer: exit {code}, {err}")
    code, _, err = features(os.path.join(tmp, "nope.safetensors"), out, "--synthetic", "8", expect=None)
    check(code == 1 and "nope.safetensors" in err, f"missing weights: exit {code}, {err}")
    code, _, err = run("features", "--arch", "resnet18", "--width", "0.5", "--small-stem", "--weights", weights,
                       "--synthetic", "8", "--size", "32", "--device", "cpu", "--out", out)
    check(code == 1 and "mismatched" in err and "--width" in err, f"weights of another width: exit {code}, {err}")
    code, _, err = features(weights, out, "--synthetic", "1", expect=None)
    check(code == 2 and "--synthetic" in err, f"--synthetic 1: exit {code}, {err}")
    code, _, err = features(weights, out, expect=None)
    check(code == 2 and "--data" in err and "--synthetic" in err, f"no images given: exit {code}, {err}")
    code, _, err = features(weights, out, "--synthetic", "8", "--cn", "99.9", expect=None)
    check(code == 2 and "--cn" in err, f"--cn 99.9: exit {code}, {err}")
    one = os.path.join(tmp, "one")
    os.makedirs(one)
    code, _, err = features(weights, out, "--data", one, expect=None)
    check(code == 1 and "no images" in err, f"empty folder: exit {code}, {err}")
    write_png(os.path.join(one, "a.png"), 40, 40, lambda x, y: (x * 6, y * 6, 90))
    code, _, err = features(weights, out, "--data", one, expect=None)
    check(code == 1 and "at least 2" in err, f"one image: exit {code}, {err}")
    check(not os.path.exists(out), "a failed run created its output folder")


CASES = {name[5:]: f for name, f in globals().items() if name.startswith("case_")}


def main():
    global FOVEA
    if len(sys.argv) != 3 or sys.argv[2] not in CASES:
        print(__doc__ + "\ncases: " + ", ".join(CASES), file=sys.stderr)
        return 2
    FOVEA = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="fovea_cli_") as tmp:
        CASES[sys.argv[2]](tmp)
    print(f"PASS: {sys.argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
