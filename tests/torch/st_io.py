# tests/torch/st_io.py: a minimal safetensors writer (F32, I64, optional string metadata) and reader
# (F32) on torch tensors, shared by the torchvision cross-check scripts, so they need neither numpy
# nor the `safetensors` package. torch is passed in, so importing this module never imports torch.
import ctypes
import json
import struct


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
