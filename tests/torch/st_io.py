# tests/torch/st_io.py: what the torchvision cross-check scripts share: a minimal safetensors writer
# (F32, I64, optional string metadata) and reader (F32) on torch tensors, so they need neither numpy
# nor the `safetensors` package, the torch import that skips, running a fovea program, and the
# result table and PASSED / FAILED verdict they end with. torch is passed in, so importing this module
# never imports torch.
import ctypes
import json
import struct
import subprocess
import sys
import time

SKIP = 77  # the exit status CTest reads as "skipped"


def import_torch(device="cpu"):
    """(torch, torchvision), or None after printing why the check is skipped (not importable, or
    no CUDA device for torch when `device` is cuda)."""
    try:
        import torch
        import torchvision
    except Exception as e:  # ImportError, or a broken installation
        print(f"SKIP: torch or torchvision is not importable by {sys.executable}: {type(e).__name__}: {e}")
        print("  (Debian: scripts/setup --with-torch; elsewhere: pip install torch torchvision)")
        return None
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(f"SKIP: torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False)")
        return None
    return torch, torchvision


def run_fovea(cmd, timeout=240):
    """Runs a fovea program and echoes its output; returns (status, seconds) where status is 0, SKIP
    (the program cannot use the device) or 1 (it failed or could not be run)."""
    name = cmd[0].rsplit("/", 1)[-1]
    t0 = time.time()
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"FAILED: running {' '.join(cmd)}: {e}")
        return 1, time.time() - t0
    sys.stdout.write(run.stdout)
    sys.stdout.write(run.stderr)
    if run.returncode == SKIP:
        print(f"SKIP: {name} cannot use the device (see above)")
        return SKIP, time.time() - t0
    if run.returncode != 0:
        print(f"FAILED: {name} exited {run.returncode}")
        return 1, time.time() - t0
    return 0, time.time() - t0


def write_safetensors(path, tensors, torch, metadata=None):
    """Writes {name: tensor} (float32 or int64, any device) in name order, with optional
    {str: str} metadata as "__metadata__"; the header is padded with spaces to 8 bytes."""
    names = {torch.float32: "F32", torch.int64: "I64"}
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        blobs.append(ctypes.string_at(t.data_ptr(), nbytes) if nbytes else b"")
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def read_safetensors(path, torch, with_metadata=False):
    """{name: float32 CPU tensor} of a file holding only F32 tensors (and, with with_metadata,
    the "__metadata__" dict as a second result)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: {name} has dtype {info['dtype']}, expected F32")
        begin, end = info["data_offsets"]
        buf = bytearray(data[base + begin:base + end])
        flat = torch.frombuffer(buf, dtype=torch.float32) if buf else torch.empty(0)
        out[name] = flat.reshape(info["shape"]).clone()
    if with_metadata:
        return out, header.get("__metadata__", {})
    return out


def print_table(head, rows):
    """Prints rows of strings under head: the first two columns left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


def verdict(failures):
    """Prints FAILED with the failures, or PASSED; returns the exit status (1 or 0)."""
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("PASSED")
    return 0
