#!/usr/bin/env python3
"""A small BERT ONNX graph, exported by torch.onnx (opset 13) the way Hugging Face's BertModel exports: the tiny-bert
fixture's weights (written by bert_golden.py) in modules named as in transformers, inputs input_ids / attention_mask
/ token_type_ids, output last_hidden_state, the padding mask added as (1 − mask)·(−10000) before the softmax.
Small enough to fuzz the ONNX reader with thousands of mutants. Regenerate (after bert_golden.py):
/usr/bin/python3 tests/reference/bert_onnx.py"""
import json
import math
import os
import struct

import torch
import torch.nn.functional as F
from torch import nn

ROOT = os.path.join(os.path.dirname(__file__), "..", "HeadLens.Tests", "Fixtures", "models")


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    return {name: torch.frombuffer(bytearray(data[e["data_offsets"][0]:e["data_offsets"][1]]), dtype=torch.float32).reshape(e["shape"])
            for name, e in header.items() if name != "__metadata__"}


class SelfAttention(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.heads, self.size = heads, c // heads
        self.query, self.key, self.value = nn.Linear(c, c), nn.Linear(c, c), nn.Linear(c, c)

    def split(self, x):
        return x.view(x.size(0), x.size(1), self.heads, self.size).permute(0, 2, 1, 3)

    def forward(self, x, mask):
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.size) + mask
        context = torch.matmul(torch.softmax(scores, dim=-1), v).permute(0, 2, 1, 3).contiguous()
        return context.view(context.size(0), context.size(1), -1)


class Output(nn.Module):
    def __init__(self, inner, c, eps):
        super().__init__()
        self.dense, self.LayerNorm = nn.Linear(inner, c), nn.LayerNorm(c, eps=eps)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self, c, heads, eps):
        super().__init__()
        self.self, self.output = SelfAttention(c, heads), Output(c, c, eps)

    def forward(self, x, mask):
        return self.output(self.self(x, mask), x)


class Intermediate(nn.Module):
    def __init__(self, c, f):
        super().__init__()
        self.dense = nn.Linear(c, f)

    def forward(self, x):
        return F.gelu(self.dense(x))


class Layer(nn.Module):
    def __init__(self, c, f, heads, eps):
        super().__init__()
        self.attention, self.intermediate, self.output = Attention(c, heads, eps), Intermediate(c, f), Output(f, c, eps)

    def forward(self, x, mask):
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class Embeddings(nn.Module):
    def __init__(self, vocab, context, types, c, eps):
        super().__init__()
        self.word_embeddings, self.position_embeddings = nn.Embedding(vocab, c), nn.Embedding(context, c)
        self.token_type_embeddings, self.LayerNorm = nn.Embedding(types, c), nn.LayerNorm(c, eps=eps)
        self.register_buffer("position_ids", torch.arange(context).expand((1, -1)), persistent=False)

    def forward(self, ids, types):
        positions = self.position_ids[:, : ids.size(1)]
        return self.LayerNorm(self.word_embeddings(ids) + self.position_embeddings(positions) + self.token_type_embeddings(types))


class Encoder(nn.Module):
    def __init__(self, c, f, heads, layers, eps):
        super().__init__()
        self.layer = nn.ModuleList([Layer(c, f, heads, eps) for _ in range(layers)])


class Bert(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        self.embeddings = Embeddings(cfg["vocab_size"], cfg["max_position_embeddings"], cfg["type_vocab_size"], c, eps)
        self.encoder = Encoder(c, cfg["intermediate_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"], eps)

    def forward(self, input_ids, attention_mask, token_type_ids):
        mask = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
        x = self.embeddings(input_ids, token_type_ids)
        for layer in self.encoder.layer:
            x = layer(x, mask)
        return x


source = os.path.join(ROOT, "tiny-bert")
cfg = json.load(open(os.path.join(source, "config.json")))
model = Bert(cfg).eval()
weights = {n: t for n, t in read_safetensors(os.path.join(source, "model.safetensors")).items() if not n.startswith("pooler.")}
model.load_state_dict(weights, strict=True)
ids = torch.tensor([[1, 5, 7, 2]])
with torch.no_grad():
    torch.onnx.export(model, (ids, torch.ones_like(ids), torch.zeros_like(ids)),
                      os.path.join(ROOT, "tiny-bert-onnx", "model.onnx"), opset_version=13,
                      input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["last_hidden_state"],
                      dynamic_axes={name: {0: "batch", 1: "sequence"} for name in ["input_ids", "attention_mask", "token_type_ids", "last_hidden_state"]})
print("tiny-bert-onnx/model.onnx:", os.path.getsize(os.path.join(ROOT, "tiny-bert-onnx", "model.onnx")), "bytes")
