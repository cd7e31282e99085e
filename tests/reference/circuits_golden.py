#!/usr/bin/env python3
"""Golden composition scores (Circuits.Compositions, `headlens circuits`), from PyTorch (Debian's python3-torch).

Reads three committed fixtures (tiny-gpt2, tiny-llama-gqa, tiny-bert) and builds every head's two circuits as dense
[C, C] matrices in float64, straight from the checkpoint's tensors (Elhage et al. 2021, with the norm's scale folded in
as TransformerLens's fold_ln does; x a stream vector, column convention):
  W_QK = diag(γ) W_Qᵀ W_K diag(γ)      score(x_q, x_k) = x_qᵀ W_QK x_k
  W_OV = W_O W_V diag(γ)               what the head writes when it attends to x
W_Q, W_K, W_V are the head's [D, C] rows of the projections (a grouped-query head reads key/value head h / (H / G)),
W_O its [C, D] columns of the output projection. γ is the scale of the norm that made the block's input: the block's
own input norm in the pre-norm decoders (GPT-2's ln_1, Llama's input_layernorm); in the post-norm encoder the norm
that ended the previous block (output.LayerNorm), or the embeddings' LayerNorm for the first block.
Then for every later head 2 and earlier head 1:
  Q = ‖W_QK²ᵀ W_OV¹‖_F / (‖W_QK²‖_F ‖W_OV¹‖_F),  K = ‖W_QK² W_OV¹‖_F / (…),  V = ‖W_OV² W_OV¹‖_F / (‖W_OV²‖_F ‖W_OV¹‖_F)
Writes tests/HeadLens.Tests/Fixtures/circuits/golden.json: per fixture, rows [layer1, head1, layer2, head2, Q, K, V].
Regenerate: /usr/bin/python3 tests/reference/circuits_golden.py
"""
import json
import os

import torch

from hooked_models import FIXTURES, load


def heads_gpt2(p, cfg):
    c, h = cfg["n_embd"], cfg["n_head"]
    for l in range(cfg["n_layer"]):
        n = f"transformer.h.{l}."
        w_q, w_k, w_v = (w.T for w in p[n + "attn.c_attn.weight"].split(c, -1))   # Conv1D [C, 3C] -> three [C, C] (out, in)
        yield l, w_q, w_k, w_v, p[n + "attn.c_proj.weight"].T, p[n + "ln_1.weight"], h, h


def heads_llama(p, cfg):
    for l in range(cfg["num_hidden_layers"]):
        n = f"model.layers.{l}.self_attn."
        yield (l, p[n + "q_proj.weight"], p[n + "k_proj.weight"], p[n + "v_proj.weight"], p[n + "o_proj.weight"],
               p[f"model.layers.{l}.input_layernorm.weight"], cfg["num_attention_heads"], cfg["num_key_value_heads"])


def heads_bert(p, cfg):
    for l in range(cfg["num_hidden_layers"]):
        n = f"encoder.layer.{l}.attention."
        gamma = p["embeddings.LayerNorm.weight"] if l == 0 else p[f"encoder.layer.{l - 1}.output.LayerNorm.weight"]
        h = cfg["num_attention_heads"]
        yield (l, p[n + "self.query.weight"], p[n + "self.key.weight"], p[n + "self.value.weight"],
               p[n + "output.dense.weight"], gamma, h, h)


def circuits(layers):
    """{(layer, head): (W_QK, W_OV)} from (layer, W_Q, W_K, W_V [rows, C], W_O [C, H·D], γ, H, G) per layer."""
    result = {}
    for l, w_q, w_k, w_v, w_o, gamma, h, g in layers:
        d = w_q.shape[0] // h
        scale = torch.diag(gamma)
        for head in range(h):
            group = head // (h // g)
            q, k, v = w_q[head * d:(head + 1) * d], w_k[group * d:(group + 1) * d], w_v[group * d:(group + 1) * d]
            o = w_o[:, head * d:(head + 1) * d]
            result[(l, head)] = (scale @ q.T @ k @ scale, o @ v @ scale)
    return result


def compositions(heads):
    rows = []
    for (l2, h2), (qk2, ov2) in sorted(heads.items()):
        for (l1, h1), (_, ov1) in sorted(heads.items()):
            if l1 >= l2:
                continue
            qk_ov = qk2.norm() * ov1.norm()
            rows.append([l1, h1, l2, h2, ((qk2.T @ ov1).norm() / qk_ov).item(), ((qk2 @ ov1).norm() / qk_ov).item(),
                         ((ov2 @ ov1).norm() / (ov2.norm() * ov1.norm())).item()])
    return rows


def main():
    golden = {}
    for name, layers in (("tiny-gpt2", heads_gpt2), ("tiny-llama-gqa", heads_llama), ("tiny-bert", heads_bert)):
        p, cfg = load(name)
        golden[name] = compositions(circuits(layers(p, cfg)))
    out = os.path.join(FIXTURES, "circuits")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "golden.json"), "w") as f:
        f.write("{\n" + ",\n".join(f' "{name}": [\n  ' + ",\n  ".join(json.dumps(row) for row in rows) + "\n ]"
                                    for name, rows in golden.items()) + "\n}\n")


if __name__ == "__main__":
    main()
