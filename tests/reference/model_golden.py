#!/usr/bin/env python3
"""Golden values for HeadLens's GPT-2 and Llama models, from PyTorch (Debian's python3-torch; /usr/bin/python3).

In the style of llm.c's test_gpt2: builds tiny GPT-2 and Llama models in plain torch with Hugging Face parameter
names and layouts (GPT-2's Conv1D weights stored [in, out], fused c_attn; Llama's nn.Linear [out, in], split-halves
RoPE, grouped-query attention, untied lm_head), saves each as a Hugging Face directory (config.json +
model.safetensors, written by hand: torch 1.13 has no safetensors package), and records the inputs, logits, loss,
every parameter gradient, and the losses of 10 AdamW steps (weight decay on tensors with ≥ 2 dimensions only).
Computed in float64 from float32-rounded parameters. Regenerate: /usr/bin/python3 tests/reference/model_golden.py
"""
import json
import math
import os

import torch
import torch.nn.functional as F

from model_golden_io import write_safetensors

torch.set_default_dtype(torch.float64)
ROOT = os.path.join(os.path.dirname(__file__), "..", "HeadLens.Tests", "Fixtures", "models")


def parameter(*shape, scale=0.1, base=0.0):
    return (base + scale * torch.randn(*shape)).float().double().requires_grad_()


def attention(q, k, v, heads, kv_heads):
    # q [B, T, H, D], k/v [B, T, G, D] -> [B, T, H, D]; causal; GQA by repeating K and V per group.
    group = heads // kv_heads
    k = k.repeat_interleave(group, dim=2)
    v = v.repeat_interleave(group, dim=2)
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))
    t = q.shape[2]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~torch.ones(t, t).tril().bool(), float("-inf"))
    return (torch.softmax(scores, -1) @ v).transpose(1, 2)


def gpt2(p, ids, cfg):
    b, t = ids.shape
    c, h = cfg["n_embd"], cfg["n_head"]
    x = p["transformer.wte.weight"][ids] + p["transformer.wpe.weight"][:t]
    for l in range(cfg["n_layer"]):
        n = f"transformer.h.{l}."
        a = F.layer_norm(x, (c,), p[n + "ln_1.weight"], p[n + "ln_1.bias"], 1e-5)
        qkv = a @ p[n + "attn.c_attn.weight"] + p[n + "attn.c_attn.bias"]
        q, k, v = (z.reshape(b, t, h, c // h) for z in qkv.split(c, dim=-1))
        y = attention(q, k, v, h, h).reshape(b, t, c)
        x = x + y @ p[n + "attn.c_proj.weight"] + p[n + "attn.c_proj.bias"]
        m = F.layer_norm(x, (c,), p[n + "ln_2.weight"], p[n + "ln_2.bias"], 1e-5)
        m = F.gelu(m @ p[n + "mlp.c_fc.weight"] + p[n + "mlp.c_fc.bias"], approximate="tanh")
        x = x + m @ p[n + "mlp.c_proj.weight"] + p[n + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (c,), p["transformer.ln_f.weight"], p["transformer.ln_f.bias"], 1e-5)
    return x @ p["transformer.wte.weight"].T


def llama3_scaled(inv, scaling):
    # transformers' _compute_llama3_parameters: keep short wavelengths, divide long ones by the factor, blend between.
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > old / low, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old / high) & ~(wavelen > old / low)
    return torch.where(medium, smoothed, scaled)


def rope(x, cfg):
    # Hugging Face's rotate_half layout: pairs (i, i + D/2).
    t, d = x.shape[1], x.shape[-1]
    inv = cfg["rope_theta"] ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    if cfg.get("rope_scaling"):
        inv = llama3_scaled(inv, cfg["rope_scaling"])
    angles = torch.arange(t, dtype=torch.float64)[:, None] * inv[None, :]
    cos = torch.cat([angles.cos(), angles.cos()], -1)[None, :, None, :]
    sin = torch.cat([angles.sin(), angles.sin()], -1)[None, :, None, :]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def rms(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def llama(p, ids, cfg):
    b, t = ids.shape
    c, h, g = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d, eps = c // h, cfg["rms_norm_eps"]
    x = p["model.embed_tokens.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        n = f"model.layers.{l}."
        a = rms(x, p[n + "input_layernorm.weight"], eps)
        # Qwen2 adds biases to q, k and v (absent from Llama's parameters: zero).
        bias = lambda name: p.get(n + f"self_attn.{name}.bias", 0.0)
        q = rope((a @ p[n + "self_attn.q_proj.weight"].T + bias("q_proj")).reshape(b, t, h, d), cfg)
        k = rope((a @ p[n + "self_attn.k_proj.weight"].T + bias("k_proj")).reshape(b, t, g, d), cfg)
        v = (a @ p[n + "self_attn.v_proj.weight"].T + bias("v_proj")).reshape(b, t, g, d)
        x = x + attention(q, k, v, h, g).reshape(b, t, c) @ p[n + "self_attn.o_proj.weight"].T
        m = rms(x, p[n + "post_attention_layernorm.weight"], eps)
        m = F.silu(m @ p[n + "mlp.gate_proj.weight"].T) * (m @ p[n + "mlp.up_proj.weight"].T)
        x = x + m @ p[n + "mlp.down_proj.weight"].T
    x = rms(x, p["model.norm.weight"], eps)
    return x @ p["lm_head.weight"].T

def llama_parameters(vocab, c, kv, f, layers, qkv_bias):
    p = {"model.embed_tokens.weight": parameter(vocab, c), "model.norm.weight": parameter(c, base=1.0),
         "lm_head.weight": parameter(vocab, c)}
    for l in range(layers):
        n = f"model.layers.{l}."
        p.update({n + "input_layernorm.weight": parameter(c, base=1.0), n + "self_attn.q_proj.weight": parameter(c, c),
                  n + "self_attn.k_proj.weight": parameter(kv, c), n + "self_attn.v_proj.weight": parameter(kv, c),
                  n + "self_attn.o_proj.weight": parameter(c, c), n + "post_attention_layernorm.weight": parameter(c, base=1.0),
                  n + "mlp.gate_proj.weight": parameter(f, c), n + "mlp.up_proj.weight": parameter(f, c),
                  n + "mlp.down_proj.weight": parameter(c, f)})
        if qkv_bias:
            p.update({n + "self_attn.q_proj.bias": parameter(c), n + "self_attn.k_proj.bias": parameter(kv),
                      n + "self_attn.v_proj.bias": parameter(kv)})
    return p



def build(name, cfg, params, forward):
    directory = os.path.join(ROOT, name)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(directory, "model.safetensors"), params)
    vocab = cfg["vocab_size"]
    ids = torch.randint(0, vocab, (2, 9))
    inputs, targets = ids[:, :-1], ids[:, 1:]
    logits = forward(params, inputs, cfg)
    loss = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
    loss.backward()
    grads = {n: [float(f"{v:.10g}") for v in p.grad.reshape(-1).tolist()] for n, p in params.items()}
    record = {
        "ids": inputs.reshape(-1).tolist(), "targets": targets.reshape(-1).tolist(), "batch": 2, "tokens": 8,
        "logits": [float(f"{v:.10g}") for v in logits.detach().reshape(-1).tolist()],
        "loss": float(loss), "grads": grads,
    }
    decay = [p for p in params.values() if p.dim() >= 2]
    no_decay = [p for p in params.values() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        logits = forward(params, inputs, cfg)
        loss = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
        losses.append(float(loss))
        loss.backward()
        optimizer.step()
    record["adamw_losses"] = losses
    with open(os.path.join(directory, "golden.json"), "w") as f:
        json.dump(record, f)
    print(f"{name}: loss {record['loss']:.6f}, 10 AdamW losses {losses[0]:.4f} .. {losses[-1]:.4f}")


def rounded(params, dtype):
    """The parameters as a reader of a dtype-stored file sees them (F16/BF16 rounding), in float64."""
    target = {"F16": torch.float16, "BF16": torch.bfloat16}[dtype]
    return {n: p.detach().to(target).double() for n, p in params.items()}


def variant(name, cfg, params, forward, dtype="F32", shards=1, strip_prefix=False):
    """A checkpoint layout the hubs use: another dtype, shards with an index, or GPT2Model names without the
    'transformer.' prefix. Records logits and 8 greedy ids (full recomputation, no cache) from what the file holds."""
    directory = os.path.join(ROOT, name)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    stored = {(n[len("transformer."):] if strip_prefix and n.startswith("transformer.") else n): p for n, p in params.items()}
    if shards == 1:
        write_safetensors(os.path.join(directory, "model.safetensors"), stored, dtype)
    else:
        names = sorted(stored)
        weight_map = {}
        for i in range(shards):
            part = names[i::shards]
            file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            write_safetensors(os.path.join(directory, file), {n: stored[n] for n in part}, dtype)
            weight_map.update({n: file for n in part})
        with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=2)
    seen = params if dtype == "F32" else rounded(params, dtype)
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    with torch.no_grad():
        logits = forward(seen, ids, cfg)
        sequence = ids[0].tolist()
        for _ in range(8):
            sequence.append(int(forward(seen, torch.tensor([sequence]), cfg)[0, -1].argmax()))
    record = {"ids": ids[0].tolist(), "logits": [float(f"{v:.10g}") for v in logits.reshape(-1).tolist()], "greedy": sequence[8:]}
    with open(os.path.join(directory, "golden.json"), "w") as f:
        json.dump(record, f)
    print(f"{name}: greedy {record['greedy']}")


torch.manual_seed(42)
gpt2_cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 61, "n_positions": 16,
            "n_ctx": 16, "n_embd": 24, "n_layer": 2, "n_head": 3, "layer_norm_epsilon": 1e-5,
            "activation_function": "gelu_new", "tie_word_embeddings": True}
c = 24
p = {"transformer.wte.weight": parameter(61, c), "transformer.wpe.weight": parameter(16, c),
     "transformer.ln_f.weight": parameter(c, base=1.0), "transformer.ln_f.bias": parameter(c)}
for l in range(2):
    n = f"transformer.h.{l}."
    p.update({n + "ln_1.weight": parameter(c, base=1.0), n + "ln_1.bias": parameter(c),
              n + "attn.c_attn.weight": parameter(c, 3 * c), n + "attn.c_attn.bias": parameter(3 * c),
              n + "attn.c_proj.weight": parameter(c, c), n + "attn.c_proj.bias": parameter(c),
              n + "ln_2.weight": parameter(c, base=1.0), n + "ln_2.bias": parameter(c),
              n + "mlp.c_fc.weight": parameter(c, 4 * c), n + "mlp.c_fc.bias": parameter(4 * c),
              n + "mlp.c_proj.weight": parameter(4 * c, c), n + "mlp.c_proj.bias": parameter(c)})
build("tiny-gpt2", gpt2_cfg, p, gpt2)
variant("tiny-gpt2-no-prefix", gpt2_cfg, p, gpt2, strip_prefix=True)
variant("tiny-gpt2-sharded", gpt2_cfg, p, gpt2, shards=3)
variant("tiny-gpt2-f16", gpt2_cfg, p, gpt2, dtype="F16")
variant("tiny-gpt2-bf16", gpt2_cfg, p, gpt2, dtype="BF16")

llama_cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 53,
             "max_position_embeddings": 16, "hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
             "hidden_act": "silu", "tie_word_embeddings": False}
p = llama_parameters(53, 32, 2 * 8, 40, 2, qkv_bias=False)
build("tiny-llama-gqa", llama_cfg, p, llama)
tied = {n: q for n, q in p.items() if n != "lm_head.weight"}
tied["lm_head.weight"] = tied["model.embed_tokens.weight"]
variant("tiny-llama-tied", dict(llama_cfg, tie_word_embeddings=True), {n: q for n, q in tied.items() if n != "lm_head.weight"},
        lambda params, ids, cfg: llama(dict(params, **{"lm_head.weight": params["model.embed_tokens.weight"]}), ids, cfg))



# Qwen2: Llama's math with biases on q, k and v.
torch.manual_seed(43)
qwen2_cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 47,
             "max_position_embeddings": 16, "hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
             "hidden_act": "silu", "tie_word_embeddings": False, "use_sliding_window": False}
build("tiny-qwen2", qwen2_cfg, llama_parameters(47, 32, 16, 40, 2, qkv_bias=True), llama)

# Llama 3.1's rope scaling: head size 8 gives wavelengths 6.3, 63, 628 and 6283 positions; with an original context
# of 64, low factor 1 and high factor 4, the first pair is kept, the second blended, the last two divided by 8.
torch.manual_seed(44)
llama3_cfg = dict(llama_cfg, vocab_size=41, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                            "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
build("tiny-llama3-rope", llama3_cfg, llama_parameters(41, 32, 16, 40, 2, qkv_bias=False), llama)
