#!/usr/bin/python3
"""tests/fuzz/make_seeds.py: writes the fuzz targets' seed corpus, tests/fuzz/corpus/<target>/.

Small valid files of every kind each parser accepts (and a few near misses), made here from numbers
so that none comes from a licensed data set. Deterministic: rerunning rewrites the same bytes.
Needs Pillow and numpy (Debian: python3-pil python3-numpy, under /usr/bin/python3). The replay test
(replay.cpp) runs every seed in every build; scripts/fuzz starts the fuzzers from them.
"""
import io
import json
import os
import struct
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pixels(h, w, channels=3):
    y, x = np.mgrid[0:h, 0:w]
    planes = [(x * 37 + y * 11 + 60 * c) % 256 for c in range(channels)]
    a = np.stack(planes, axis=-1).astype(np.uint8)
    return a[..., 0] if channels == 1 else a


def encoded(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, format=fmt, **kw)
    return b.getvalue()


def images():
    rgb = Image.fromarray(pixels(6, 7))
    gray = Image.fromarray(pixels(5, 4, 1))
    rgba = Image.fromarray(pixels(3, 5, 4), "RGBA")
    put("image", "rgb.png", encoded(rgb, "PNG"))
    put("image", "gray.png", encoded(gray, "PNG"))
    put("image", "rgba.png", encoded(rgba, "PNG"))
    put("image", "palette.png", encoded(rgb.convert("P"), "PNG"))
    put("image", "interlaced.png", encoded(rgb, "PNG", interlace=1))
    put("image", "gray16.png", encoded(Image.fromarray((pixels(4, 4, 1).astype(np.uint16) * 257), "I;16"), "PNG"))
    put("image", "baseline.jpg", encoded(Image.fromarray(pixels(16, 16)), "JPEG", quality=80))
    put("image", "progressive.jpg", encoded(Image.fromarray(pixels(16, 24)), "JPEG", quality=60, progressive=True))
    put("image", "gray.jpg", encoded(Image.fromarray(pixels(8, 8, 1)), "JPEG"))
    put("image", "subsampled.jpg", encoded(Image.fromarray(pixels(17, 9)), "JPEG", subsampling=2))
    put("image", "rgb.bmp", encoded(rgb, "BMP"))
    put("image", "palette.bmp", encoded(rgb.convert("P"), "BMP"))
    frames = [Image.fromarray(pixels(5, 5)).convert("P"), Image.fromarray(pixels(5, 5)[::-1]).convert("P")]
    put("image", "two-frames.gif", encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]))
    put("image", "rgb.tga", encoded(rgb, "TGA"))
    put("image", "rgb.ppm", encoded(rgb, "PPM"))
    put("image", "lzw.tif", encoded(rgb, "TIFF", compression="tiff_lzw"))
    put("image", "truncated-rgb.png", encoded(rgb, "PNG")[:40])


def fundus():
    # A dark field with a bright, vignetted disc: what the field-of-view detection expects.
    y, x = np.mgrid[0:40, 0:52]
    r = np.hypot(y - 20, x - 27) / 18.0
    disc = np.clip(1.0 - r * r, 0, 1)
    rgb = np.stack([200 * disc, 90 * disc, 40 * disc], axis=-1).astype(np.uint8)
    put("fundus", "disc.png", encoded(Image.fromarray(rgb), "PNG"))
    put("fundus", "disc.jpg", encoded(Image.fromarray(rgb), "JPEG", quality=70))
    put("fundus", "one-pixel.png", encoded(Image.fromarray(pixels(1, 1)), "PNG"))
    put("fundus", "one-row.png", encoded(Image.fromarray(pixels(1, 60)), "PNG"))
    put("fundus", "one-column.png", encoded(Image.fromarray(pixels(45, 1)), "PNG"))
    put("fundus", "black.png", encoded(Image.fromarray(np.zeros((9, 9, 3), np.uint8)), "PNG"))
    put("fundus", "white.png", encoded(Image.fromarray(np.full((9, 7, 3), 255, np.uint8)), "PNG"))


def tiffs():
    rgb = Image.fromarray(pixels(6, 7))
    mask = Image.fromarray(pixels(9, 13, 1) > 128)  # mode "1"
    put("tiff", "raw-rgb.tif", encoded(rgb, "TIFF"))
    put("tiff", "lzw-rgb.tif", encoded(rgb, "TIFF", compression="tiff_lzw"))
    put("tiff", "deflate-gray.tif", encoded(Image.fromarray(pixels(5, 6, 1)), "TIFF", compression="tiff_adobe_deflate"))
    put("tiff", "packbits-rgb.tif", encoded(rgb, "TIFF", compression="packbits"))
    put("tiff", "mask-1bit.tif", encoded(mask, "TIFF"))
    put("tiff", "mask-1bit-lzw.tif", encoded(mask, "TIFF", compression="tiff_lzw"))
    put("tiff", "mask-g4.tif", encoded(mask, "TIFF", compression="group4"))
    put("tiff", "palette.tif", encoded(rgb.convert("P"), "TIFF"))
    put("tiff", "tiled.tif", encoded(Image.fromarray(pixels(20, 20)), "TIFF", tile=(16, 16)))


def safetensors_file(tensors, metadata=None):
    """tensors: [(name, dtype, shape, raw bytes)] in order."""
    header, offset, blobs = {}, 0, []
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def safetensors():
    f32 = np.arange(6, dtype=np.float32).reshape(2, 3)
    put("safetensors", "f32.safetensors", safetensors_file([("w", "F32", [2, 3], f32.tobytes())]))
    put("safetensors", "scalar-and-empty.safetensors",
        safetensors_file([("a", "F32", [], np.float32(1.5).tobytes()), ("e", "F32", [0, 4], b"")]))
    put("safetensors", "dtypes.safetensors", safetensors_file([
        ("b", "BF16", [2], np.array([0x3f80, 0xc000], dtype=np.uint16).tobytes()),
        ("d", "F64", [2], np.array([1e-310, 3.5], dtype=np.float64).tobytes()),
        ("h", "F16", [3], np.array([1.0, -2.0, 65504.0], dtype=np.float16).tobytes()),
        ("n", "I64", [1], np.array([7], dtype=np.int64).tobytes()),
    ]))
    put("safetensors", "rank5.safetensors",
        safetensors_file([("r", "F32", [1, 1, 1, 1, 2], np.zeros(2, dtype=np.float32).tobytes())]))
    put("safetensors", "checkpoint.safetensors", safetensors_file(
        [("model.fc.weight", "F32", [2, 2], np.ones(4, dtype=np.float32).tobytes()),
         ("optim.step", "F32", [], np.float32(3).tobytes())],
        {"fovea.step": "3", "fovea.epoch": "1", "fovea.batch_in_epoch": "0", "format": "pt"}))
    put("safetensors", "bad-offsets.safetensors",
        safetensors_file([("w", "F32", [2], np.zeros(3, dtype=np.float32).tobytes())]))


def csvs():
    put("csv", "eyepacs.csv", "image,level\n10_left,0\n10_right,2\n13_left,4\n")
    put("csv", "aptos.csv", "id_code,diagnosis\n000c1434d8d7,2\n001639a390f0,4\n")
    put("csv", "idrid.csv", "Image name,Retinopathy grade,Risk of macular edema \nIDRiD_001,3,2\nIDRiD_002,0,0\n")
    put("csv", "messidor2.csv", "image_id,adjudicated_dr_grade,adjudicated_dme,adjudicated_gradable\n"
        "20051020_43808_0100_PP.png,0.0,0.0,1\n20051020_43832_0100_PP.png,,,0\nIM000001.JPG,2,1,1\n")
    put("csv", "messidor1.csv", "Image name,Ophthalmologic department,Retinopathy grade,Risk of macular edema\n"
        "20051019_38557_0100_PP.tif,Service Ophtalmologie Lariboisiere,3,1\n")
    put("csv", "lesions.csv", "image,lesion_type,mask_path\nIDRiD_01,MA,masks/IDRiD_01_MA.tif\n"
        "IDRiD_01,EX,masks/IDRiD_01_EX.tif\n")
    put("csv", "split.csv", "image,split\n10_left,train\n10_right,val\n13_left,test\n")
    put("csv", "quoted-crlf.csv", 'image,level\r\n"a,b",1\r\n"say ""x""",0\r\n')
    put("csv", "predictions.csv", 'image,label,pred,p0,p1,p2\n10_left,0,0,0.7,0.2,0.1\n'
        '"left, ""1""",2,1,0.1,0.45000002,0.45\n13_left,1,2,1e-08,0.49999997,0.5\n')
    put("csv", "robustness.csv", "corruption,severity,images,accuracy,error,kappa,referable_auc\n"
        "clean,0,48,0.75,0.25,0.8125,nan\ngaussian_noise,5,48,0.2,0.8,-inf,1e-05\n")


def configs():
    put("config", "finetune.json", json.dumps({"arch": "resnet18", "batch_size": 64, "lr": 0.1,
                                               "pretrained": True, "label_fractions": [0.1, 1.0]}))
    put("config", "nulls.json", '{"seed": null, "epochs": 3}')
    put("config", "run.yaml", "arch: resnet50\nbatch-size: 32\nlr: 3.0e-4\nlabel_fractions: [0.01, 0.1]\n")
    put("config", "block.yaml", "seeds:\n  - 1\n  - 2\nout: runs/x\n")
    put("config", "empty.yaml", "# nothing\n")


def main():
    images()
    fundus()
    tiffs()
    safetensors()
    csvs()
    configs()
    n = sum(len(fs) for _, _, fs in os.walk(CORPUS))
    print(f"make_seeds: {n} files under {CORPUS}")


if __name__ == "__main__":
    sys.exit(main())
