"""The PyTorch peer of bench-local.sh: a greedy decode loop with a KV cache over the same
safetensors weights the local: engine reads (Llama: RMSNorm, RoPE, SwiGLU, tied or untied head),
float32, batch 1.  Matrix-vector products go through torch.mv, the fastest of torch's CPU paths
for one row on this kind of machine (F.linear is about half as fast there).

    python3 torch_decode.py MODEL_DIR THREADS NEW   ->   "tokens seconds tokens/s cpu_seconds"
"""
import json
import struct
import sys
import time

import torch

DT = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def load(path):
    """A safetensors file, read by hand (no safetensors package in Debian's torch)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in head.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[b:e]), dtype=DT[t["dtype"]]).reshape(t["shape"]).float()
    return out


def main():
    d, threads, new = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    c = json.load(open(d + "/config.json"))
    w = load(d + "/model.safetensors")
    L, H, KV = c["num_hidden_layers"], c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
    D = c["hidden_size"]
    hd = c.get("head_dim", D // H)
    eps = c["rms_norm_eps"]
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    inv = 1.0 / (c.get("rope_theta", 10000.0) ** (torch.arange(0, hd, 2).float() / hd))
    kc = torch.zeros(L, new + 2, KV, hd)
    vc = torch.zeros(L, new + 2, KV, hd)
    lw = [{k: w[f"model.layers.{i}.{k}"] for k in (
        "input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight",
        "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight", "mlp.gate_proj.weight",
        "mlp.up_proj.weight", "mlp.down_proj.weight")} for i in range(L)]

    def norm(x, g):
        return x * torch.rsqrt(x.pow(2).mean() + eps) * g

    def rope(x, pos):  # x [heads, hd], half-split pairs
        a = pos * inv
        cos, sin = a.cos(), a.sin()
        x1, x2 = x[:, : hd // 2], x[:, hd // 2:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    def step(tok, pos):
        x = w["model.embed_tokens.weight"][tok]
        for i, p in enumerate(lw):
            h = norm(x, p["input_layernorm.weight"])
            q = rope(torch.mv(p["self_attn.q_proj.weight"], h).view(H, hd), pos)
            kc[i, pos] = rope(torch.mv(p["self_attn.k_proj.weight"], h).view(KV, hd), pos)
            vc[i, pos] = torch.mv(p["self_attn.v_proj.weight"], h).view(KV, hd)
            k = kc[i, : pos + 1].repeat_interleave(H // KV, 1)  # [t, H, hd]
            v = vc[i, : pos + 1].repeat_interleave(H // KV, 1)
            a = torch.softmax(torch.einsum("hd,thd->ht", q, k) / hd ** 0.5, -1)
            o = torch.einsum("ht,thd->hd", a, v).reshape(H * hd)
            x = x + torch.mv(p["self_attn.o_proj.weight"], o)
            h = norm(x, p["post_attention_layernorm.weight"])
            g = torch.mv(p["mlp.gate_proj.weight"], h)
            x = x + torch.mv(p["mlp.down_proj.weight"], torch.nn.functional.silu(g) * torch.mv(p["mlp.up_proj.weight"], h))
        return int(torch.argmax(torch.mv(head, norm(x, w["model.norm.weight"]))))

    with torch.no_grad():
        tok = step(1, 0)  # the 1-token prompt, untimed like the other peers'
        t0, c0 = time.perf_counter(), time.process_time()
        for pos in range(1, new):
            tok = step(tok, pos)
        s, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{new - 1} {s:.4f} {(new - 1) / s:.2f} {cpu:.4f}")


main()
