"""Golden outputs for HeadLens's numeric kernels, recorded from PyTorch.

Run with Debian's torch:  /usr/bin/python3 tests/reference/kernels_golden.py
Writes tests/HeadLens.Tests/Fixtures/kernels/*.json: for fixed small random float32 inputs, torch's outputs and
gradients of layer_norm, an RMSNorm written as Llama's formula, gelu(approximate='tanh'), silu, silu(g)*u, softmax
(with -inf masking), cross_entropy (with ignore_index=-1), three torch.optim.AdamW steps with weight decay, and
torch.nn.utils.clip_grad_norm_. Every float is a float32 value written exactly (repr of its double); -inf is the string "-Infinity".
"""
import json
import os

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "HeadLens.Tests", "Fixtures", "kernels")


def flat(t):
    # JSON has no infinities: masked entries are written as the string "-Infinity".
    return [v if v == v and abs(v) != float("inf") else str(v).replace("inf", "Infinity")
            for v in (float(x) for x in t.detach().to(torch.float32).reshape(-1).tolist())]


def write(name, record):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name + ".json")
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print("wrote", os.path.normpath(path))


def leaf(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).requires_grad_(True)


def layer_norm():
    rows, cols, eps = 3, 7, 1e-5
    x, w, b = leaf(rows, cols), leaf(cols), leaf(cols)
    dy = torch.randn(rows, cols)
    y = F.layer_norm(x, (cols,), w, b, eps)
    y.backward(dy)
    write("layer_norm", {"rows": rows, "cols": cols, "epsilon": eps, "x": flat(x), "weight": flat(w),
                         "bias": flat(b), "yGrad": flat(dy), "y": flat(y), "xGrad": flat(x.grad),
                         "weightGrad": flat(w.grad), "biasGrad": flat(b.grad)})


def rms_norm():
    # Hugging Face LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * w
    rows, cols, eps = 3, 7, 1e-6
    x, w = leaf(rows, cols), leaf(cols)
    dy = torch.randn(rows, cols)
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
    y.backward(dy)
    write("rms_norm", {"rows": rows, "cols": cols, "epsilon": eps, "x": flat(x), "weight": flat(w),
                       "yGrad": flat(dy), "y": flat(y), "xGrad": flat(x.grad), "weightGrad": flat(w.grad)})


def activations():
    n = 29
    record = {}
    x = leaf(n, scale=3.0)
    dy = torch.randn(n)
    y = F.gelu(x, approximate="tanh")
    y.backward(dy)
    record["gelu"] = {"x": flat(x), "yGrad": flat(dy), "y": flat(y), "xGrad": flat(x.grad)}
    x = leaf(n, scale=3.0)
    y = F.silu(x)
    y.backward(dy)
    record["silu"] = {"x": flat(x), "yGrad": flat(dy), "y": flat(y), "xGrad": flat(x.grad)}
    g, u = leaf(n, scale=3.0), leaf(n)
    y = F.silu(g) * u
    y.backward(dy)
    record["swiglu"] = {"gate": flat(g), "up": flat(u), "yGrad": flat(dy), "y": flat(y),
                        "gateGrad": flat(g.grad), "upGrad": flat(u.grad)}
    write("activations", record)


def softmax():
    # Rows with some -inf (masked) entries; torch gives exactly 0 there. (A fully masked row is NaN in torch and 0
    # in HeadLens by design, so it is not part of the golden data.)
    rows, cols = 3, 11
    x = torch.randn(rows, cols) * 2
    x[0, 3] = float("-inf")
    x[1, 5:] = float("-inf")
    x.requires_grad_(True)
    dy = torch.randn(rows, cols)
    y = F.softmax(x, dim=-1)
    y.backward(dy)
    write("softmax", {"rows": rows, "cols": cols, "x": flat(x), "yGrad": flat(dy), "y": flat(y),
                      "xGrad": flat(x.grad)})


def cross_entropy():
    rows, vocab = 5, 13
    logits = leaf(rows, vocab, scale=2.0)
    targets = torch.tensor([3, -1, 12, 0, -1])
    loss = F.cross_entropy(logits, targets, ignore_index=-1)
    losses = F.cross_entropy(logits.detach(), targets, ignore_index=-1, reduction="none")
    loss.backward()
    write("cross_entropy", {"rows": rows, "vocab": vocab, "logits": flat(logits), "targets": targets.tolist(),
                            "loss": float(loss), "losses": flat(losses), "logitsGrad": flat(logits.grad)})


def adamw():
    n, lr, betas, eps, wd = 19, 1e-2, (0.9, 0.95), 1e-8, 0.1
    p = torch.nn.Parameter(torch.randn(n))
    initial = flat(p)
    optimizer = torch.optim.AdamW([p], lr=lr, betas=betas, eps=eps, weight_decay=wd)
    grads, params = [], []
    for _ in range(3):
        g = torch.randn(n) * 0.3
        p.grad = g.clone()
        optimizer.step()
        grads.append(flat(g))
        params.append(flat(p))
    state = optimizer.state[p]
    write("adamw", {"learningRate": lr, "beta1": betas[0], "beta2": betas[1], "epsilon": eps, "weightDecay": wd,
                    "initial": initial, "gradients": grads, "parameters": params,
                    "firstMoment": flat(state["exp_avg"]), "secondMoment": flat(state["exp_avg_sq"])})


def clip_grad_norm():
    # Two parameters, as a model has many: HeadLens clips their concatenation, which is the same global norm.
    a, b = torch.nn.Parameter(torch.zeros(7)), torch.nn.Parameter(torch.zeros(5))
    a.grad, b.grad = torch.randn(7), torch.randn(5)
    before = flat(a.grad) + flat(b.grad)
    max_norm = 0.5
    norm = torch.nn.utils.clip_grad_norm_([a, b], max_norm)
    write("clip_grad_norm", {"maxNorm": max_norm, "gradients": before, "norm": float(norm),
                             "clipped": flat(a.grad) + flat(b.grad)})


if __name__ == "__main__":
    torch.manual_seed(20241122)
    print("torch", torch.__version__)
    layer_norm()
    rms_norm()
    activations()
    softmax()
    cross_entropy()
    adamw()
    clip_grad_norm()
