#!/usr/bin/env python3
"""Golden values for a BERT-family encoder, from PyTorch (Debian's python3-torch; /usr/bin/python3).

A tiny BertModel built in plain torch with Hugging Face parameter names and layouts (nn.Linear [out, in]):
embeddings (word + position + token type) then LayerNorm; post-norm blocks x = LN(x + attn(x)), x = LN(x + mlp(x));
exact erf GELU; bidirectional attention with a padding mask. Saved as a Hugging Face directory (config.json +
model.safetensors with the pooler BertModel stores; position_ids, an int64 buffer, is not saved since transformers 4.31) with golden.json: a padded batch of two
sequences, their token types and lengths, the last hidden state and layer 0's attention probabilities.
Computed in float64 from float32-rounded parameters. Regenerate: /usr/bin/python3 tests/reference/bert_golden.py
"""
import json
import math
import os

import torch
import torch.nn.functional as F

from model_golden_io import write_safetensors

torch.set_default_dtype(torch.float64)
ROOT = os.path.join(os.path.dirname(__file__), "..", "HeadLens.Tests", "Fixtures", "models", "tiny-bert")


def parameter(*shape, scale=0.1, base=0.0):
    return (base + scale * torch.randn(*shape)).float().double()


torch.manual_seed(45)
vocab, context, layers, heads, c, f, types, eps = 40, 16, 2, 4, 32, 48, 2, 1e-12
cfg = {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": vocab, "max_position_embeddings": context,
       "hidden_size": c, "intermediate_size": f, "num_hidden_layers": layers, "num_attention_heads": heads,
       "type_vocab_size": types, "layer_norm_eps": eps, "hidden_act": "gelu", "position_embedding_type": "absolute"}
p = {"embeddings.word_embeddings.weight": parameter(vocab, c, scale=0.5),
     "embeddings.position_embeddings.weight": parameter(context, c, scale=0.5),
     "embeddings.token_type_embeddings.weight": parameter(types, c, scale=0.5),
     "embeddings.LayerNorm.weight": parameter(c, base=1.0), "embeddings.LayerNorm.bias": parameter(c),
     "pooler.dense.weight": parameter(c, c), "pooler.dense.bias": parameter(c)}
for l in range(layers):
    n = f"encoder.layer.{l}."
    for name, shape in [("attention.self.query", (c, c)), ("attention.self.key", (c, c)), ("attention.self.value", (c, c)),
                        ("attention.output.dense", (c, c)), ("intermediate.dense", (f, c)), ("output.dense", (c, f))]:
        p[n + name + ".weight"] = parameter(*shape, scale=0.3)
        p[n + name + ".bias"] = parameter(shape[0])
    for name in ("attention.output.LayerNorm", "output.LayerNorm"):
        p[n + name + ".weight"] = parameter(c, base=1.0)
        p[n + name + ".bias"] = parameter(c)

ids = torch.randint(0, vocab, (2, 11))
token_types = torch.tensor([[0] * 6 + [1] * 5, [0] * 4 + [1] * 3 + [0] * 4])
lengths = [11, 7]
mask = torch.tensor([[1] * 11, [1] * 7 + [0] * 4])


def ln(x, name):
    return F.layer_norm(x, (c,), p[name + ".weight"], p[name + ".bias"], eps)


def linear(x, name):
    return x @ p[name + ".weight"].T + p[name + ".bias"]


b, t = ids.shape
d = c // heads
x = p["embeddings.word_embeddings.weight"][ids] + p["embeddings.position_embeddings.weight"][:t] \
    + p["embeddings.token_type_embeddings.weight"][token_types]
x = ln(x, "embeddings.LayerNorm")
bias = (1.0 - mask[:, None, None, :].double()) * torch.finfo(torch.float64).min
probabilities = []
for l in range(layers):
    n = f"encoder.layer.{l}."
    q, k, v = (linear(x, n + "attention.self." + w).reshape(b, t, heads, d).transpose(1, 2) for w in ("query", "key", "value"))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d) + bias
    attention = torch.softmax(scores, -1)
    probabilities.append(attention)
    y = (attention @ v).transpose(1, 2).reshape(b, t, c)
    x = ln(x + linear(y, n + "attention.output.dense"), n + "attention.output.LayerNorm")
    m = F.gelu(linear(x, n + "intermediate.dense"))
    x = ln(x + linear(m, n + "output.dense"), n + "output.LayerNorm")

os.makedirs(ROOT, exist_ok=True)
with open(os.path.join(ROOT, "config.json"), "w") as out:
    json.dump(cfg, out, indent=2)
write_safetensors(os.path.join(ROOT, "model.safetensors"), p)
record = {"ids": ids.reshape(-1).tolist(), "token_types": token_types.reshape(-1).tolist(), "lengths": lengths,
          "batch": b, "tokens": t,
          "hidden": [float(f"{v:.10g}") for v in x.reshape(-1).tolist()],
          "layer0_probabilities_first": [float(f"{v:.10g}") for v in probabilities[0][0].reshape(-1).tolist()]}
with open(os.path.join(ROOT, "golden.json"), "w") as out:
    json.dump(record, out)
print(f"tiny-bert: hidden mean |x| {x.abs().mean():.4f}")
