"""Writing safetensors files by hand (torch 1.13 has no safetensors package), shared by the golden scripts."""
import json
import struct

import torch


def raw_bytes(tensor, dtype):
    t = tensor.detach().contiguous()
    if dtype == "F16":
        return t.to(torch.float16).numpy().tobytes()
    if dtype == "BF16":
        return t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
    return t.to(torch.float32).numpy().tobytes()


def write_safetensors(path, tensors, dtype="F32"):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        data = raw_bytes(tensors[name], dtype)
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path):
    """The F32 tensors of a safetensors file as float64 tensors (the fixtures these scripts wrote)."""
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] != "F32":
            raise ValueError(f"{path}: {name} is {entry['dtype']}, only F32 is read")
        start, end = entry["data_offsets"]
        values = struct.unpack(f"<{(end - start) // 4}f", data[start:end])
        tensors[name] = torch.tensor(values, dtype=torch.float64).reshape(entry["shape"])
    return tensors
