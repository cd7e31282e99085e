#!/usr/bin/env python3
"""Writes a GPT-2 124M-shaped model with random weights in the Hugging Face layout (config.json, model.safetensors,
and GPT-2's real vocab.json + merges.txt from the test fixtures), for memory and speed measurements of the commands
that load a model (attention, heads, generate). Usage: /usr/bin/python3 bench/random_gpt2.py OUT_DIR [LAYERS]"""
import gzip
import json
import os
import shutil
import struct
import sys

import torch

out = sys.argv[1]
layers = int(sys.argv[2]) if len(sys.argv) > 2 else 12
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
c, vocab, context = 768, 50257, 1024
config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": vocab, "n_positions": context,
          "n_ctx": context, "n_embd": c, "n_layer": layers, "n_head": 12, "layer_norm_epsilon": 1e-5,
          "activation_function": "gelu_new", "tie_word_embeddings": True}
tensors = {"transformer.wte.weight": torch.randn(vocab, c) * 0.02, "transformer.wpe.weight": torch.randn(context, c) * 0.01,
           "transformer.ln_f.weight": torch.ones(c), "transformer.ln_f.bias": torch.zeros(c)}
for l in range(layers):
    n = f"transformer.h.{l}."
    tensors.update({n + "ln_1.weight": torch.ones(c), n + "ln_1.bias": torch.zeros(c),
                    n + "attn.c_attn.weight": torch.randn(c, 3 * c) * 0.02, n + "attn.c_attn.bias": torch.zeros(3 * c),
                    n + "attn.c_proj.weight": torch.randn(c, c) * 0.02, n + "attn.c_proj.bias": torch.zeros(c),
                    n + "ln_2.weight": torch.ones(c), n + "ln_2.bias": torch.zeros(c),
                    n + "mlp.c_fc.weight": torch.randn(c, 4 * c) * 0.02, n + "mlp.c_fc.bias": torch.zeros(4 * c),
                    n + "mlp.c_proj.weight": torch.randn(4 * c, c) * 0.02, n + "mlp.c_proj.bias": torch.zeros(c)})
header, offset = {}, 0
for name in sorted(tensors):
    size = tensors[name].numel() * 4
    header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + size]}
    offset += size
raw = json.dumps(header).encode()
raw += b" " * (-len(raw) % 8)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(raw)))
    f.write(raw)
    for name in sorted(tensors):
        f.write(tensors[name].contiguous().numpy().tobytes())
with open(os.path.join(out, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
fixtures = os.path.join(os.path.dirname(__file__), "..", "tests", "HeadLens.Tests", "Fixtures", "gpt2-tokenizer")
for name in ("vocab.json", "merges.txt"):
    with gzip.open(os.path.join(fixtures, name + ".gz"), "rb") as source, open(os.path.join(out, name), "wb") as target:
        shutil.copyfileobj(source, target)
print(f"{out}: GPT-2 shape, {layers} layers, random weights")
