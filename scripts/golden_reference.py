#!/usr/bin/python3
"""Independent reference for the Llama-family model: logits, loss and LoRA gradients in plain PyTorch (float64).

Reads the inputs fixture written by `scripts/make_model_fixture.ts` (dequantized NF4 weights exactly as our
TypeScript reference dequantizer produces them, LoRA A/B, token ids, labels) and writes the golden outputs.
Nothing here shares code with the TypeScript model: RMSNorm, RoPE (rotate_half, with llama3/linear scaling),
GQA causal attention, Qwen3's per-head q/k RMSNorm, SwiGLU and cross-entropy with -100 are written out from the
Hugging Face definitions.

Needs Debian's python3-torch (`apt-get install -y python3-torch`), so run it with /usr/bin/python3:

    /usr/bin/python3 scripts/golden_reference.py tests/fixtures/llama_tiny_inputs.safetensors \
        tests/fixtures/llama_tiny_golden.safetensors
"""

import json
import math
import struct
import sys

import torch

DTYPES = {"F32": (torch.float32, 4), "F64": (torch.float64, 8), "I32": (torch.int32, 4), "BF16": (torch.bfloat16, 2)}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        dtype, _ = DTYPES[info["dtype"]]
        lo, hi = info["data_offsets"]
        buf = bytearray(data[base + lo : base + hi])
        out[name] = torch.frombuffer(buf, dtype=dtype).reshape(info["shape"]) if hi > lo else torch.zeros(info["shape"], dtype=dtype)
    return out, meta


def write_safetensors(path, tensors, meta):
    header = {"__metadata__": meta}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        t = t.detach().to(torch.float32).contiguous()
        b = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def inv_freq(cfg):
    d = cfg["head_dim"]
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    s = cfg.get("rope_scaling")
    if not s:
        return inv
    kind = s.get("rope_type", s.get("type"))
    if kind == "default":
        return inv
    if kind == "linear":
        return inv / s["factor"]
    # llama3: transformers' _compute_llama3_parameters.
    factor, lo, hi, old = s["factor"], s["low_freq_factor"], s["high_freq_factor"], s["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / lo, old / hi
    wavelen = 2 * math.pi / inv
    out = torch.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * out / factor + smooth * out
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, out)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def head_norm(x, w, eps):
    # transformers' Qwen3Attention: q_norm / k_norm (Qwen3RMSNorm over head_dim) on the [B, T, heads, head_dim] view
    # of q_proj / k_proj, before the transpose and before RoPE.
    variance = x.pow(2).mean(dim=-1, keepdim=True)
    return w * (x / torch.sqrt(variance + eps))


def main(inp, out):
    t, meta = read_safetensors(inp)
    cfg = json.loads(meta["config"])
    scale = float(meta["lora_scale"])
    f64 = {k: v.to(torch.float64) for k, v in t.items() if v.dtype != torch.int32}
    lora = {k: v.clone().requires_grad_(True) for k, v in f64.items() if ".lora_" in k}
    ids = t["input_ids"].long()
    labels = t["labels"].long()
    B, T = ids.shape
    H, KV, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]

    def linear(x, name):
        # The NF4 round trip of the weight, as the GPU model computes with it.
        y = x @ f64["dequant." + name + ".weight"].T
        if name + ".bias" in f64:
            y = y + f64[name + ".bias"]
        if name + ".lora_A.weight" in lora:
            y = y + scale * ((x @ lora[name + ".lora_A.weight"].T) @ lora[name + ".lora_B.weight"].T)
        return y

    pos = torch.arange(T, dtype=torch.float64)
    freqs = torch.outer(pos, inv_freq(cfg))
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    # Causal and padding mask, as transformers combines them: query t sees keys j <= t that are not padding.
    keep = torch.ones(T, T, dtype=torch.bool).tril()[None, None] & t["attention_mask"].bool()[:, None, None, :]

    h = f64["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = rms_norm(h, f64[p + "input_layernorm.weight"], eps)
        q = linear(x, p + "self_attn.q_proj").view(B, T, H, D)
        k = linear(x, p + "self_attn.k_proj").view(B, T, KV, D)
        if p + "self_attn.q_norm.weight" in f64:
            q = head_norm(q, f64[p + "self_attn.q_norm.weight"], eps)
            k = head_norm(k, f64[p + "self_attn.k_norm.weight"], eps)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = linear(x, p + "self_attn.v_proj").view(B, T, KV, D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        s = s.masked_fill(~keep, float("-inf"))
        a = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, H * D)
        h = h + linear(a, p + "self_attn.o_proj")
        x = rms_norm(h, f64[p + "post_attention_layernorm.weight"], eps)
        g = linear(x, p + "mlp.gate_proj")
        u = linear(x, p + "mlp.up_proj")
        h = h + linear(torch.nn.functional.silu(g) * u, p + "mlp.down_proj")
    h = rms_norm(h, f64["model.norm.weight"], eps)
    head = f64["lm_head.weight"] if "lm_head.weight" in f64 else f64["model.embed_tokens.weight"]
    logits = h @ head.T
    # Hugging Face's causal-LM shift: position t predicts labels[t+1].
    target = torch.full_like(labels, -100)
    target[:, :-1] = labels[:, 1:]
    target[t["attention_mask"] == 0] = -100
    loss_sum = torch.nn.functional.cross_entropy(
        logits.reshape(B * T, -1), target.reshape(-1), ignore_index=-100, reduction="sum"
    )
    loss_sum.backward()
    res = {"logits": logits, "loss_sum": loss_sum.reshape(1), "tokens": (target != -100).sum().reshape(1)}
    for k, v in lora.items():
        res[k.replace(".weight", ".grad")] = v.grad
    write_safetensors(out, res, {"source": "scripts/golden_reference.py (torch %s, float64)" % torch.__version__})
    print(f"loss_sum {loss_sum.item():.6f} over {int(res['tokens'].item())} tokens -> {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
